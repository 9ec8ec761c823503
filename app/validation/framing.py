"""Chunk framing of a .3dm archive, checked without reading the payloads.

After the 32-byte header, a 3dm archive is a sequence of top-level chunks
(typecode + length, the length being 8 bytes from archive version 50 on),
ending with an end-of-file chunk that records the file length. Walking the
chunk headers costs a few seeks, and tells truncation and corruption apart
before rhino3dm is given the file. Inside the object table we also count the
object records, so the reader can tell when openNURBS silently dropped some.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, NoReturn

from .errors import UnreadableModelError

HEADER_SIZE = 32
TCODE_SHORT = 0x80000000  # the "length" field is a value, no payload follows
TCODE_COMMENTBLOCK = 0x00000001
TCODE_ENDOFFILE = 0x00007FFF
TCODE_ENDOFFILE_GOO = 0x00007FFE
TCODE_TABLE = 0x10000000
TCODE_OBJECT_TABLE = 0x10000013
TCODE_OBJECT_RECORD = 0x20008070
TCODE_ENDOFTABLE = 0xFFFFFFFF


class _Framing:
    """Chunk-header walk. A framing error is called "truncated" when the file does
    not end with an end-of-file chunk, "corrupt" when it does (the tail is
    intact, so the damage is inside)."""

    def __init__(self, fh: BinaryIO, size: int, version: int) -> None:
        self.fh, self.size = fh, size
        self.fmt = "<IQ" if version >= 50 else "<II"  # chunk lengths are 8 bytes from V5 on
        self.step = struct.calcsize(self.fmt)
        self.mark_length = self.step - 4
        self.complete = self._ends_with_end_mark()

    def header(self, pos: int) -> tuple[int, int]:
        self.fh.seek(pos)
        return struct.unpack(self.fmt, self.fh.read(self.step))

    def fail(self, detail: str) -> NoReturn:
        if self.complete:
            raise UnreadableModelError(f"corrupt .3dm file: {detail}", "corrupt")
        raise UnreadableModelError(f"truncated .3dm file: {detail}", "truncated")

    def _ends_with_end_mark(self) -> bool:
        pos = self.size - self.step - self.mark_length
        if pos < HEADER_SIZE:
            return False
        tcode, length = self.header(pos)
        return tcode == TCODE_ENDOFFILE and length == self.mark_length

    def _payload(self, pos: int) -> int:
        self.fh.seek(pos + self.step)
        return int.from_bytes(self.fh.read(self.mark_length), "little")


def scan_framing(fh: BinaryIO, size: int, version: int) -> int | None:
    """Walk the top-level chunk headers; return the number of object records."""
    frame = _Framing(fh, size, version)
    pos, records = HEADER_SIZE, None
    while True:
        if pos + frame.step > size:
            frame.fail(f"end-of-file mark missing ({size} bytes)")
        tcode, length = frame.header(pos)
        if tcode == TCODE_ENDOFFILE:
            _check_end_mark(frame, pos, length)
            return records
        end = pos + frame.step + (0 if tcode & TCODE_SHORT else length)
        if not _plausible_top_level(tcode):
            raise UnreadableModelError(f"corrupt .3dm file: unrecognised data at byte {pos}", "corrupt")
        if end > size:
            frame.fail(f"chunk at byte {pos} needs {end} bytes, file has {size}")
        if tcode == TCODE_OBJECT_TABLE:
            records = _count_object_records(frame, pos + frame.step, end)
        pos = end


def _plausible_top_level(tcode: int) -> bool:
    """Top-level chunks are the comment block, tables and end-of-file marks."""
    return tcode in (TCODE_COMMENTBLOCK, TCODE_ENDOFFILE_GOO) or tcode & 0xFFFF0000 == TCODE_TABLE


def _check_end_mark(frame: _Framing, pos: int, length: int) -> None:
    end = pos + frame.step + frame.mark_length
    if length != frame.mark_length or end > frame.size:
        frame.fail(f"malformed end-of-file mark at byte {pos}")
    recorded = frame._payload(pos)
    if end == frame.size and recorded == frame.size:
        return
    if recorded == end:
        raise UnreadableModelError(
            f"corrupt .3dm file: {frame.size - end} unexpected bytes after the end-of-file mark", "corrupt"
        )
    frame.fail(f"end-of-file mark records {recorded} bytes, file has {frame.size}")


def _count_object_records(frame: _Framing, pos: int, end: int) -> int:
    count = 0
    while pos + frame.step <= end:
        tcode, length = frame.header(pos)
        if tcode == TCODE_ENDOFTABLE:
            return count
        if tcode == TCODE_OBJECT_RECORD:
            count += 1
        pos += frame.step + (0 if tcode & TCODE_SHORT else length)
    frame.fail("object table framing is inconsistent")
