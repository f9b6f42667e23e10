"""Hydra config groups shipped with the package."""
