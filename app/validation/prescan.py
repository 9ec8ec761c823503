"""What a file declares it will take to read, found before rhino3dm reads it.

openNURBS writes large arrays (mesh vertices, normals, texture coordinates, embedded files, render
content) as compressed buffers: the uncompressed size (4 bytes), a CRC-32 (4 bytes), the method
(1 = zlib), then an anonymous chunk (typecode 0x40008000 and its length, 8 bytes from archive
version 5 on, 4 before) holding the zlib stream. Reading the model inflates every one of them,
at up to ~1000:1, so their declared sizes tell, from a 1 MB upload, that reading it would take
1 GB. This finds them by the method byte and typecode with a plain byte search over a memory map
(linear, ~1 GB/s, no payload inflated), and keeps those whose chunk fits in the file and starts
like a zlib stream.

What cannot be known before reading: memory that is not in a compressed buffer (uncompressed
arrays cost about their size on disk; each object has a fixed overhead, ~2.4 KB in the engine),
and the time native code takes on pathological structure (deep layer or block nesting): the
sandbox's limits (sandbox.py) catch those.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

_MARKER = b"\x01" + struct.pack("<I", 0x40008000)  # method zlib, then the anonymous chunk's typecode
_ZLIB_CMF = frozenset(range(0x08, 0x79, 0x10))  # deflate, any window size: the stream's first byte


@dataclass(frozen=True)
class Declared:
    compressed_buffers: int
    uncompressed_bytes: int


def declared_expansion(path: str | os.PathLike[str], archive_version: int) -> Declared:
    """Compressed buffers in the file and the bytes they inflate to, as the file declares them."""
    length_size = 8 if archive_version >= 5 else 4
    buffers = total = 0
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return Declared(0, 0)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            size = len(data)
            pos = data.find(_MARKER, 8)
            while pos >= 0:
                start = pos + len(_MARKER) + length_size  # the zlib stream
                if start < size and data[start] in _ZLIB_CMF:
                    chunk = int.from_bytes(data[pos + len(_MARKER) : start], "little")
                    if start + chunk <= size:
                        buffers += 1
                        total += struct.unpack_from("<I", data, pos - 8)[0]
                pos = data.find(_MARKER, pos + 1)
    return Declared(buffers, total)
