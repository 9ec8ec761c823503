"""Storage keys and names: nothing is ever read or written outside the storage dir (app/storage/ stores them)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from app.core.config import settings


class StoragePathError(ValueError):
    """A path that would leave the storage dir."""


def resolve_in_storage(relative_path: str, *, root: Path | None = None) -> Path:
    """The path of `relative_path` under `root` (default: settings.storage_dir), never outside it."""
    root = (root or settings.storage_dir).resolve()
    candidate = (root / relative_path).resolve()
    if candidate != root and root not in candidate.parents:
        raise StoragePathError(f"path {relative_path!r} is outside the storage directory")
    return candidate


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_filename(name: str, *, max_length: int = 120) -> str:
    """A safe basename: no directories, no traversal, no control characters, bounded length."""
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip("._")
    if not name:
        name = "upload"
    if len(name) > max_length:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:10] if dot else ""
        name = (stem if dot else name)[: max_length - len(ext) - 1] + (f".{ext}" if ext else "")
    return name
