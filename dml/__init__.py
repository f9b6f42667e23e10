"""dml: a command-line experiment runner for deep metric learning."""

from dml.config.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()
