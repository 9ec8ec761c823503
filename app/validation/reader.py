"""Open a .3dm file, or explain precisely why it cannot be used.

Before rhino3dm sees a file we check, in Python and without reading the whole
file: that it exists and is a regular, non-empty file; the 32-byte 3dm header
("3D Geometry File Format " + 8-character version); and the chunk framing
(top-level chunks must tile the file up to the end-of-file chunk, which records
the file length). rhino3dm's `File3dm.Read` only returns None on failure, so
these checks are what turn "unreadable" into a reason a user can act on.

Decisions:
* Truncated files are rejected even though openNURBS can sometimes read a
  prefix of them: a report on a partial model would silently omit objects.
  A framing error is reported as "truncated" when the file does not end with
  a valid end-of-file mark, as "corrupt" when it does (see framing.py).
* Crash safety: in probes (rhino3dm 8.35: truncation at many offsets, random
  byte flips and overwritten blocks, header followed by zeros/random bytes)
  `File3dm.Read` never crashed; it returned None or a partial model. The
  framing check keeps inconsistent input (bad chunk lengths, truncation) away
  from the C++ reader anyway, so it never has to trust a length that points
  past the end of the file.
* A corrupt object table can still "read" successfully with objects missing.
  We count object records while checking the framing; if none of them loaded
  the file is rejected, if only some did the engine reports OBJECTS_UNREADABLE.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import rhino3dm

from .errors import ModelFileMissingError, UnreadableModelError
from .framing import HEADER_SIZE, scan_framing

MAGIC = b"3D Geometry File Format "

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"ISO-10303-21", "a STEP file"),
    (b"solid ", "an ASCII STL file"),
)


@dataclass
class LoadedModel:
    model: rhino3dm.File3dm
    path: Path
    size: int
    archive_version: int
    object_records: int | None  # None when the framing was not scanned (v1)


@dataclass
class FileFacts:
    """What the file says about itself before rhino3dm reads it."""

    size: int
    archive_version: int
    object_records: int | None  # None when the framing was not scanned (v1)


def inspect_file(path: str | os.PathLike[str]) -> FileFacts:
    """Header and chunk-framing checks (a few seeks, no payload reads), or UnreadableModelError."""
    p = Path(path)
    size = _check_file(p)
    try:
        with p.open("rb") as fh:
            version = _check_header(fh.read(HEADER_SIZE), size)
            if version == 1:
                _check_really_v1(fh, size)
            records = scan_framing(fh, size, version) if version >= 2 else None
    except PermissionError as exc:
        raise UnreadableModelError(f"permission denied: {p.name}", "permission") from exc
    return FileFacts(size, version, records)


def read_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read `path` with rhino3dm or raise UnreadableModelError."""
    p = Path(path)
    facts = inspect_file(p)
    size, version, records = facts.size, facts.archive_version, facts.object_records
    model = rhino3dm.File3dm.Read(str(p))
    if model is None:
        raise UnreadableModelError("corrupt .3dm file: openNURBS could not read the archive", "corrupt")
    if records and len(model.Objects) == 0:  # type: ignore[arg-type]  # stubs lack File3dmObjectTable.__len__
        raise UnreadableModelError(f"corrupt .3dm file: none of its {records} object records could be read", "corrupt")
    return LoadedModel(model, p, size, version, records)


def _check_file(p: Path) -> int:
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise ModelFileMissingError(f"file not found: {p}") from exc
    except PermissionError as exc:
        raise UnreadableModelError(f"permission denied: {p}", "permission") from exc
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableModelError(f"not a file but a directory: {p.name}", "not_a_file")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableModelError(f"not a regular file: {p.name}", "not_a_file")
    if st.st_size == 0:
        raise UnreadableModelError("empty file (0 bytes)", "empty")
    return st.st_size


def _check_header(head: bytes, size: int) -> int:
    if not head.startswith(MAGIC):
        if MAGIC.startswith(head):
            raise UnreadableModelError(f"truncated .3dm file: only {size} bytes, header incomplete", "truncated")
        raise UnreadableModelError(f"not a .3dm file: {_sniff(head)}", "not_3dm")
    if len(head) < HEADER_SIZE:
        raise UnreadableModelError(f"truncated .3dm file: only {size} bytes, header incomplete", "truncated")
    digits = head[len(MAGIC) :].strip(b" ")
    if not digits.isdigit() or int(digits) < 1:
        raise UnreadableModelError(f"bad .3dm header: version field {head[len(MAGIC) :]!r}", "bad_header")
    return int(digits)


def _check_really_v1(fh: BinaryIO, size: int) -> None:
    """A Rhino 1 archive has no V5 chunk framing. A later archive whose header was set to 1 would
    be read as Rhino 1 (openNURBS then finds no objects: a wrong report, and the framing check
    skipped): refuse it."""
    try:
        scan_framing(fh, size, 50)
    except UnreadableModelError:
        return
    raise UnreadableModelError(
        "bad .3dm header: it says Rhino 1, but the file is framed as a Rhino 5 or later archive", "bad_header"
    )


def _sniff(head: bytes) -> str:
    for signature, label in _SIGNATURES:
        if head.startswith(signature):
            return f"content looks like {label}"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "no 3dm header (unrecognised binary content)"
    if all(ch.isprintable() or ch.isspace() for ch in text):
        return "content looks like text"
    return "no 3dm header (unrecognised content)"
