"""prometheus_client's multiprocess files read into per-series sums: the only code knowing their layout.

Replaces the reading half of prometheus_client's `MultiProcessCollector` (`_read_metrics`) for
counter and histogram files. That re-reads every file and re-decodes every entry's JSON key on each
scrape: with `generate_latest`, ~0.6 s CPU per scrape for 50 task names x 4 queues (~45k
entries) on the 2-core reference machine (docs/performance.md, `/metrics` scrape). The files are
append-only: an entry, once written, keeps its key at the same offset for the life of the file (a
process re-opening its file appends). So `MultiProcessFiles` parses each key once, remembers where
each value lives, and on each read maps the files read-only and sums the values across processes
with C builtins (itemgetter, map). Gauges (any multiprocess mode) and summaries are left to
prometheus_client's own merge (`MergedFiles`).

Every line relying on prometheus_client's private layout carries a `private:` marker comment naming
the coupling; each has a check in tests/contract/prometheus_client_checks.py (run after every upgrade).
"""

from __future__ import annotations

import glob
import json
import mmap
import os
import re
import struct
from operator import add, itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client import multiprocess

FAST_TYPES = ("counter", "histogram")
_INT = struct.Struct("i")  # private: prometheus_client.mmap_layout
_FIRST_ENTRY = 8  # private: prometheus_client.mmap_layout
_LIVE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")  # private: prometheus_client.multiprocess_filenames


def file_type(path: str) -> str:
    """counter, histogram, gauge or summary: files are `{type}_{pid}.db` or `gauge_{mode}_{pid}.db`."""
    return os.path.basename(path).split("_")[0]  # private: prometheus_client.multiprocess_filenames


def list_files(path: Path | str) -> tuple[list[str], list[str]]:
    """The directory's metric files: (counter and histogram files, every other one)."""
    files = glob.glob(os.path.join(path, "*.db"))
    return [f for f in files if file_type(f) in FAST_TYPES], [f for f in files if file_type(f) not in FAST_TYPES]


def reap_dead_processes(path: Path) -> None:
    """mark_process_dead for pool children that are gone (also the SIGKILLed ones, which never say so)."""
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if not match:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(path))
        except PermissionError:
            pass


class MergedFiles:
    """A collector: prometheus_client's own merge of the files the fast path does not read."""

    def __init__(self, files: list[str]) -> None:
        self.files = files

    def collect(self) -> Any:
        merge = multiprocess.MultiProcessCollector.merge
        return merge(self.files, accumulate=True) if self.files else []  # private: prometheus_client.multiprocess.merge


class Series(NamedTuple):
    """One series as the files name it: a counter or histogram sample, or (`le` set) one histogram bucket."""

    order: int  # rank of its first appearance among everything read
    family: str
    help: str
    labels: tuple[tuple[str, str], ...]  # sorted, without `le`
    name: str  # the sample name: counter `x_total`, histogram `x_sum` or `x_bucket`
    le: float | None  # a bucket's upper bound (its count is per bucket, not cumulative)


class Reading(NamedTuple):
    sums: dict[str, list[float]]  # per file type, per slot: the sum over every file, added in file order from 0.0
    # (path, inode, entries) per file read: when it changes, the set of series may have changed.
    seen: tuple[tuple[str, int, int], ...]


def gatherer(indices: list[int]) -> Any:
    """A callable taking seq -> tuple(seq[i] for i in indices), at C speed (operator.itemgetter)."""
    if len(indices) > 1:
        return itemgetter(*indices)
    if indices:
        only = indices[0]
        return lambda seq: (seq[only],)
    return lambda seq: ()


class _FileIndex:
    """Where the values of one metric file live, and which slot (series) each one adds to."""

    __slots__ = ("align", "aligned_to", "check_at", "check_key", "fetch", "inode", "slot_of", "used", "value_at")

    def __init__(self, inode: int) -> None:
        self.inode = inode
        self.used = _FIRST_ENTRY
        self.value_at: list[int] = []  # index of each value in the file viewed as doubles
        self.slot_of: list[int] = []
        self.check_at = 0  # offset and bytes of the last key parsed: detects a replaced file
        self.check_key = b""
        self.fetch: Any = None  # gatherer of this file's values, in entry order
        self.align: Any = None  # gatherer putting them in slot order (0.0 where the file has none)
        self.aligned_to: int | None = -1  # slots `align` was built for; None: duplicate keys, no fast path

    def aligned(self, values: Any, slots: int) -> tuple[float, ...] | None:
        if self.fetch is None:
            self.fetch = gatherer(self.value_at)
        if self.aligned_to != slots:
            if self.aligned_to is None:
                return None
            position = [len(self.value_at)] * slots  # that index is the 0.0 appended below
            for i, slot in enumerate(self.slot_of):
                if position[slot] != len(self.value_at):  # a key twice in one file: sum it the slow way
                    self.aligned_to = None
                    return None
                position[slot] = i
            self.align, self.aligned_to = gatherer(position), slots
        return self.align((*self.fetch(values), 0.0))


class MultiProcessFiles:
    """Per-series sums over counter and histogram files, each entry's key parsed once. Not thread safe."""

    def __init__(self) -> None:
        self.series: dict[str, list[Series]] = {typ: [] for typ in FAST_TYPES}  # per type, by slot
        self._ids: dict[str, dict[tuple, int]] = {typ: {} for typ in FAST_TYPES}
        self._keys: dict[tuple[str, bytes], int] = {}  # (type, encoded key) -> slot
        self._files: dict[str, _FileIndex] = {}
        self._order = 0

    def _slot(self, typ: str, key: bytes) -> int:
        family, name, labels, help_text = json.loads(key)  # private: prometheus_client.mmap_key
        le = labels.pop("le", None) if typ == "histogram" else None  # private: prometheus_client.mmap_key
        labels_key = tuple(sorted(labels.items()))
        bound = None if le is None else float(le)
        ident = (family, labels_key, name, bound)  # HELP is the first one seen, as MultiProcessCollector's
        slot = self._ids[typ].get(ident)
        if slot is None:
            slot = self._ids[typ][ident] = len(self.series[typ])
            self.series[typ].append(Series(self._order, family, help_text, labels_key, name, bound))
            self._order += 1
        return slot

    def _index(self, path: str, typ: str, data: Any, used: int, inode: int) -> _FileIndex:
        index = self._files.get(path)
        if (
            index is None
            or index.inode != inode
            or used < index.used
            or (index.check_key and data[index.check_at : index.check_at + len(index.check_key)] != index.check_key)
        ):
            index = self._files[path] = _FileIndex(inode)
        pos = index.used  # private: prometheus_client.mmap_append_only
        grew = False
        while pos < used:  # entries appended since the last read (all of them, the first time)
            length = _INT.unpack_from(data, pos)[0]  # private: prometheus_client.mmap_layout
            if length + pos > used:
                raise RuntimeError(f"Read beyond file size detected, {path} is corrupted.")
            key_at = pos + 4
            key = data[key_at : key_at + length]
            pos = key_at + length + (8 - (length + 4) % 8)  # private: prometheus_client.mmap_layout
            slot = self._keys.get((typ, key))
            if slot is None:
                slot = self._keys[(typ, key)] = self._slot(typ, key)
            index.value_at.append(pos // 8)  # private: prometheus_client.mmap_layout
            index.slot_of.append(slot)
            index.check_at, index.check_key = key_at, key
            pos += 16  # private: prometheus_client.mmap_layout
            grew = True
        if grew:
            index.fetch, index.align = None, None
            if index.aligned_to is not None:
                index.aligned_to = -1
        index.used = used
        return index

    def read(self, files: list[str]) -> Reading:
        """Map each file read-only (files only grow, and a deleted one stays mapped intact) and sum."""
        loaded = []
        maps = []
        try:
            for path in files:
                try:
                    with open(path, "rb") as handle:
                        stat = os.fstat(handle.fileno())
                        if stat.st_size < _FIRST_ENTRY or stat.st_size % 8:
                            continue
                        data = mmap.mmap(handle.fileno(), stat.st_size, access=mmap.ACCESS_READ)
                except FileNotFoundError:
                    continue
                maps.append(data)
                used = _INT.unpack_from(data, 0)[0]  # private: prometheus_client.mmap_layout
                if used <= _FIRST_ENTRY or used > stat.st_size:
                    continue
                typ = file_type(path)
                index = self._index(path, typ, data, used, stat.st_ino)
                loaded.append((path, typ, index, memoryview(data).cast("d")))
            sums = {typ: [0.0] * len(series) for typ, series in self.series.items()}
            for _path, typ, index, values in loaded:
                total = sums[typ]
                aligned = index.aligned(values, len(total))
                if aligned is not None:
                    sums[typ] = list(map(add, total, aligned))
                else:
                    for at, slot in zip(index.value_at, index.slot_of, strict=True):
                        total[slot] += values[at]
            seen = tuple((path, index.inode, len(index.value_at)) for path, _typ, index, _v in loaded)
        finally:
            for *_rest, values in loaded:
                values.release()
            for data in maps:
                data.close()
        return Reading(sums, seen)

    def present(self, seen: tuple[tuple[str, int, int], ...]) -> list[tuple[str, int, Series]]:
        """(type, slot, series) of every series in the files of `seen`, in order of first appearance."""
        slots: dict[str, set[int]] = {typ: set() for typ in FAST_TYPES}
        for path, _inode, count in seen:
            slots[file_type(path)].update(self._files[path].slot_of[:count])
        found = [(self.series[typ][slot], typ, slot) for typ, chosen in slots.items() for slot in chosen]
        return [(typ, slot, series) for series, typ, slot in sorted(found, key=lambda item: item[0].order)]
