"""The local store: a directory (STORAGE_URL=file://…, STORAGE_DIR, or VAR_DIR/storage).

An upload is written to `<root>/.incoming/<random>.part` and moved under its key by `commit` (one
rename: a reader never sees half a file). Reading needs no copy: `materialise` yields the file's
own path.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from app.core.storage import resolve_in_storage
from app.storage.base import ObjectStore, Upload, check_key

INCOMING = ".incoming"


class LocalUpload(Upload):
    def __init__(self, key: str, *, root: Path) -> None:
        super().__init__(key)
        self.target = resolve_in_storage(key, root=root)  # StoragePathError before any byte is written
        incoming = root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        self.temp_path = incoming / f"{uuid.uuid4().hex}.part"
        self._handle: IO[bytes] | None = self.temp_path.open("wb")
        self._committed = False

    def write(self, data: bytes) -> None:
        assert self._handle is not None, "write after close"
        self._handle.write(data)
        self.size += len(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def commit(self) -> None:
        self.close()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.temp_path, self.target)
        self._committed = True

    def discard(self) -> None:
        self.close()
        self.temp_path.unlink(missing_ok=True)
        if self._committed:
            self.target.unlink(missing_ok=True)


class LocalStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return resolve_in_storage(check_key(key), root=self.root)

    def open_upload(self, key: str) -> LocalUpload:
        return LocalUpload(key, root=self.root)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    @contextlib.contextmanager
    def _materialise(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"stored file is missing: {path.name}")
        yield path

    def materialise(self, key: str) -> contextlib.AbstractContextManager[Path]:
        return self._materialise(key)

    def describe(self) -> str:
        return f"file://{self.root}"
