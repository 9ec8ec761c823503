"""The document's user strings (File3dm.Strings), read in linear time.

rhino3dm 8.35 offers no linear way: `File3dmStringTable` has `len()`, `[i]` (a (key, value)
tuple), `[key]`, `DocumentUserTextCount()` and `Delete()`, and every one of those calls copies
the whole list in C++ (`ONX_Model::GetDocumentUserStrings`) before answering. Reading n strings
by index costs n copies of n strings: 50,000 strings took 176 s.

So the list is read from the file itself, once: openNURBS stores it as a user table with plug-in
id ON_DocumentUserStringList holding one ON_UserStringList user data (a count, then one chunk
per string: version 1.0, key, value as UTF-16). What the parse gives is only used when it agrees
with rhino3dm (same count, same first and last pair); otherwise, and for small tables, the
strings come from rhino3dm, at most `_BUDGET // count` of them, so that path stays bounded too.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from .framing import HEADER_SIZE, TCODE_ENDOFFILE, TCODE_SHORT

TCODE_USER_TABLE = 0x10000017
TCODE_USER_TABLE_UUID = 0x20008080
TCODE_USER_RECORD = 0x20000081
TCODE_OPENNURBS_CLASS = 0x00027FFA
TCODE_CLASS_USERDATA = 0x00027FFD
TCODE_CLASS_USERDATA_HEADER = 0x0002FFF9
TCODE_ANONYMOUS_CHUNK = 0x40008000
DOCUMENT_STRINGS_ID = uuid.UUID("06F3218E-F5EC-4f6c-B74C-14583F0ED7BC").bytes_le
STRING_LIST_ID = uuid.UUID("CE28DE29-F4C5-4faa-A50A-C3A6849B6329").bytes_le
_DIRECT = 64  # up to this many strings, rhino3dm's own indexing is cheap enough
_BUDGET = 2_000_000  # strings rhino3dm may copy on the fallback path


class _Malformed(Exception):
    pass


def read_document_strings(model: Any, path: Path, version: int, cap: int) -> tuple[int, list[tuple[str, str]]]:
    """(number of document strings, the first `cap` (key, value) pairs in table order; fewer
    only when the file could not be parsed and the table is large)."""
    table = model.Strings
    total = len(table)
    if total == 0:
        return 0, []
    if total > _DIRECT:
        parsed = parse_document_strings(path, version)
        if (
            parsed is not None
            and len(parsed) == total
            and parsed[0] == tuple(table[0])
            and parsed[-1] == tuple(table[total - 1])
        ):
            return total, parsed[:cap]
    affordable = total if total <= _DIRECT else max(_BUDGET // total, 1)
    return total, [tuple(table[k]) for k in range(min(total, cap, affordable))]


def parse_document_strings(path: Path, version: int) -> list[tuple[str, str]] | None:
    """The document strings as the file stores them, or None when the file holds none or they
    are not laid out as expected (archives before version 2 have no chunk lengths to walk)."""
    if version < 2:
        return None
    fmt = "<IQ" if version >= 50 else "<II"
    try:
        with open(path, "rb") as fh:
            payload = _document_strings_table(fh, struct.Struct(fmt))
            return None if payload is None else _strings(_Chunks(payload, struct.Struct(fmt)))
    except (OSError, _Malformed, struct.error, UnicodeDecodeError):
        return None


def _document_strings_table(fh: BinaryIO, head: struct.Struct) -> bytes | None:
    """The payload of the user table whose plug-in id is ON_DocumentUserStringList's."""
    pos = HEADER_SIZE
    while True:
        fh.seek(pos)
        raw = fh.read(head.size + head.size + 16)
        if len(raw) < head.size:
            return None
        tcode, length = head.unpack_from(raw)
        if tcode == TCODE_ENDOFFILE:
            return None
        if tcode == TCODE_USER_TABLE and len(raw) == 2 * head.size + 16:
            inner, _ = head.unpack_from(raw, head.size)
            if inner == TCODE_USER_TABLE_UUID and raw[2 * head.size :] == DOCUMENT_STRINGS_ID:
                fh.seek(pos + head.size)
                return fh.read(length)
        pos += head.size + (0 if tcode & TCODE_SHORT else length)


class _Chunks:
    """Reads nested chunks out of one bytes payload; every length is checked against its parent."""

    def __init__(self, data: bytes, head: struct.Struct) -> None:
        self.data, self.head = data, head

    def chunk(self, pos: int, end: int, tcode: int) -> tuple[int, int]:
        """(start, end) of the payload of the chunk at `pos`, which must have type `tcode`."""
        if pos + self.head.size > end:
            raise _Malformed("chunk header past its parent")
        found, length = self.head.unpack_from(self.data, pos)
        start = pos + self.head.size
        if found != tcode or found & TCODE_SHORT or start + length > end:
            raise _Malformed(f"expected chunk {tcode:#x} at {pos}")
        return start, start + length

    def int32(self, pos: int) -> int:
        value: int = struct.unpack_from("<i", self.data, pos)[0]
        return value

    def string(self, pos: int, end: int) -> tuple[str, int]:
        """A UTF-16 string (element count including the terminating NUL, then the elements)."""
        count = struct.unpack_from("<I", self.data, pos)[0]
        stop = pos + 4 + 2 * count
        if stop > end:
            raise _Malformed("string past its chunk")
        text = self.data[pos + 4 : stop].decode("utf-16-le", errors="replace")
        return text.removesuffix("\x00"), stop


def _strings(c: _Chunks) -> list[tuple[str, str]]:
    """user table payload -> uuid chunk, record -> class -> user data -> header, anonymous chunk ->
    string list chunk -> one chunk per string."""
    size = len(c.data)
    _, pos = c.chunk(0, size, TCODE_USER_TABLE_UUID)
    start, end = c.chunk(pos, size, TCODE_USER_RECORD)
    pos, class_end = c.chunk(start, end, TCODE_OPENNURBS_CLASS)
    while True:  # skip the class uuid and data chunks up to the user data
        if pos + c.head.size > class_end:
            raise _Malformed("no user data in the document string table")
        tcode, length = c.head.unpack_from(c.data, pos)
        if tcode == TCODE_CLASS_USERDATA:
            break
        if tcode & TCODE_SHORT:
            raise _Malformed("no user data in the document string table")
        pos += c.head.size + length
    start, end = c.chunk(pos, class_end, TCODE_CLASS_USERDATA)
    header, after_header = c.chunk(start + 1, end, TCODE_CLASS_USERDATA_HEADER)  # after a 1-byte version
    if c.data[header : header + 16] != STRING_LIST_ID:
        raise _Malformed("the document string table holds no string list")
    start, end = c.chunk(after_header, end, TCODE_ANONYMOUS_CHUNK)
    start, end = c.chunk(start, end, TCODE_ANONYMOUS_CHUNK)
    if c.int32(start) != 1:
        raise _Malformed("unknown string list version")
    count, pos = c.int32(start + 8), start + 12
    out: list[tuple[str, str]] = []
    for _ in range(count):
        entry, pos = c.chunk(pos, end, TCODE_ANONYMOUS_CHUNK)
        if c.int32(entry) != 1:
            raise _Malformed("unknown string version")
        key, at = c.string(entry + 8, pos)
        value, _ = c.string(at, pos)
        out.append((key, value))
    return out
