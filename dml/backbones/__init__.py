"""Backbones: networks that map an input to an embedding vector."""
