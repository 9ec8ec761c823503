"""Librarian: an async-job stack with observability built in."""

__version__ = "0.1.0"
