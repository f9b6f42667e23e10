"""dml: a command-line experiment runner for deep metric learning."""

__version__ = "0.1.0"
