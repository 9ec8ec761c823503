"""The object store interface: the API stores model files and workers read them through it.

An upload is written as it arrives (`write`, never blocking on the network), its network work done
off the event loop (`pending` → `flush`), then `commit`ted once its database row may be written;
`discard` leaves nothing behind at any point. Workers `materialise` a key to a local path (rhino3dm
reads files, not streams) for the length of a `with` block.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path

from app.core.errors import DependencyUnavailable
from app.core.storage import StoragePathError

_ESCAPE = re.compile(r"^/|(^|/)\.\.?(/|$)")


class StorageUnavailable(DependencyUnavailable, ConnectionError):
    """The store cannot be reached or refused us (down, wrong credentials, no bucket): a 503 in the
    API, a transient error (ConnectionError) that tasks retry. `reason` names the S3 error code or
    the exception type, never a credential."""

    def __init__(self, reason: str) -> None:
        super().__init__("storage", reason)


def check_key(key: str) -> str:
    """A key is a relative path without `.`/`..` segments (StoragePathError otherwise): the same
    key means the same object on every backend."""
    if _ESCAPE.search(key):
        raise StoragePathError(f"path {key[:200]!r} is outside the storage directory")
    if not key or len(key) > 1000 or "\x00" in key:
        raise StoragePathError(f"not a storage key: {key[:200]!r}")
    return key


class Upload(ABC):
    """One object being written. Not thread-safe: one writer, flushes taken in turn."""

    def __init__(self, key: str) -> None:
        self.key = check_key(key)
        self.size = 0

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Take the next bytes (buffered or written to local disk; no network)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most uploads have nothing to close)
        """No more data will come (frees the local file handle; the object is not final yet)."""

    def pending(self) -> bool:
        """Network work is waiting for `flush` (a full part, or the end of a closed upload)."""
        return False

    def flush(self) -> None:  # noqa: B027 (optional hook: a local upload has no network work)
        """Do the waiting network work; blocking, so the API calls it from a thread."""

    @abstractmethod
    def commit(self) -> None:
        """Make the object final under its key (closes and flushes first)."""

    @abstractmethod
    def discard(self) -> None:
        """Leave nothing behind: abort an unfinished upload, delete a committed object. Idempotent."""


class ObjectStore(ABC):
    """Where parts and batch items are kept, by key (`parts/<id>/<name>`, `batches/<id>/<item>/<name>`)."""

    @abstractmethod
    def open_upload(self, key: str) -> Upload: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error when it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def materialise(self, key: str) -> AbstractContextManager[Path]:
        """A local path holding the object for the `with` block (FileNotFoundError when there is
        no such object); a temporary copy is removed when the block ends, however it ends."""

    @abstractmethod
    def describe(self) -> str:
        """Where objects go, for logs: never a credential."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key` in one go (diagnostics and tests)."""
        upload = self.open_upload(key)
        try:
            for start in range(0, max(len(data), 1), 1 << 20):
                upload.write(data[start : start + (1 << 20)])
                if upload.pending():
                    upload.flush()
            upload.commit()
        except BaseException:
            upload.discard()
            raise

    def read_bytes(self, key: str) -> bytes:
        with self.materialise(key) as path:
            return path.read_bytes()
