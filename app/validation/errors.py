"""Exceptions raised when a file cannot be used as a model."""

from __future__ import annotations


class UnreadableModelError(Exception):
    """The file is not a readable .3dm model. `.reason` is human readable;
    `.code` is one of: missing, not_a_file, permission, empty, not_3dm,
    bad_header, truncated, corrupt."""

    def __init__(self, reason: str, code: str = "corrupt") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class ModelFileMissingError(UnreadableModelError):
    """The path does not exist (as opposed to existing but being unreadable)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, code="missing")
