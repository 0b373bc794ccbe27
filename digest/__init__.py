"""digest: weekly email digest newsletters."""

__version__ = "0.1.0"
