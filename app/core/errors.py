"""Errors shared across layers."""

from __future__ import annotations


class DependencyUnavailable(Exception):
    """A dependency (broker, database, storage) cannot be reached right now: answered as 503."""

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} unavailable: {reason}")
        self.dependency = dependency
        self.reason = reason
