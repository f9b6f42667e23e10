"""Losses: one class per file, each with a YAML in conf/loss/."""
