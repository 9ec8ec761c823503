"""The worker's /metrics endpoint: multiprocess aggregation across the prefork pool, per scrape.

Every scrape reads every process's metric files afresh (nothing is served stale), but it does
not re-parse them. prometheus_client's MultiProcessCollector re-decodes every entry's JSON key,
builds a Sample per entry and formats every label set again on each scrape: ~1 s per scrape for
50 task names x 4 queues x every state (~45k file entries, ~22k samples) on the 2-core reference
machine (docs/performance.md). Its mmap files are append-only: an entry, once written, keeps its
key at the same offset for the life of the file (a process re-opening its file appends). So
`MultiProcessExposition` parses each entry's key once, remembers where each value lives, and on
each scrape maps the files read-only, gathers the values, sums them across processes and writes
them after pre-rendered `name{labels} ` prefixes, with the per-value work done by C builtins
(itemgetter, map, accumulate): ~12 ms of CPU for the same directory. That path covers counter and
histogram files (all but a handful of the series); gauges (any multiprocess mode), summaries and
the extra collectors go through prometheus_client's own merge() and generate_latest(). The output
has the same families, HELP, TYPE, samples and values as prometheus_client's (line order may
differ, which the format allows); bench/scrape.py checks that on every run.
"""

from __future__ import annotations

import glob
import hmac
import json
import mmap
import os
import re
import struct
import threading
from itertools import accumulate
from operator import add, itemgetter
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, ThreadingWSGIServer
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES, _escape, escape_label_name, escape_metric_name
from prometheus_client.utils import floatToGoString

from app.core.config import settings

_LIVE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")
_FAST_TYPES = ("counter", "histogram")
_INT = struct.Struct("i")


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty the directory: files of a previous run would be summed into this one's numbers."""
    path.mkdir(parents=True, exist_ok=True)
    for item in path.iterdir():
        if item.is_file():
            item.unlink()


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


def authorized(header: str | None) -> bool:
    if not settings.METRICS_TOKEN:
        return True
    expected = f"Bearer {settings.METRICS_TOKEN}"
    return header is not None and hmac.compare_digest(header.encode(), expected.encode())


def _label_pairs(labels: tuple[tuple[str, str], ...]) -> list[str]:
    return [f'{escape_label_name(k, UNDERSCORES)}="{_escape(v, ALLOWUTF8, False)}"' for k, v in labels]


def _prefix(name: str, pairs: list[str]) -> str:
    """`name{a="1",b="2"} ` as generate_latest writes it (label pairs already sorted)."""
    name = escape_metric_name(name, UNDERSCORES)
    return f"{name}{{{','.join(pairs)}}} " if pairs else f"{name} "


def _gatherer(indices: list[int]) -> Any:
    """A callable taking seq -> tuple(seq[i] for i in indices), at C speed (operator.itemgetter)."""
    if len(indices) > 1:
        return itemgetter(*indices)
    if indices:
        only = indices[0]
        return lambda seq: (seq[only],)
    return lambda seq: ()


class _Formatted(dict):
    """value -> its exposition text (+ newline), computed once per distinct value."""

    def __missing__(self, value: float) -> str:
        if len(self) > 100_000:
            self.clear()
        text = self[value] = floatToGoString(value) + "\n"
        return text


class _Space:
    """The output slots (one per merged sample or bucket) of one file type: counter or histogram."""

    def __init__(self) -> None:
        self.info: list[tuple[int, str, str, tuple, Any]] = []  # (order, family, help, group, what)
        self.ids: dict[tuple, int] = {}


class _FileIndex:
    """Where the values of one metric file live, and which output slot each one adds to."""

    __slots__ = ("inode", "used", "value_at", "slot_of", "check_at", "check_key", "fetch", "align", "aligned_to")

    def __init__(self, inode: int) -> None:
        self.inode = inode
        self.used = 8
        self.value_at: list[int] = []  # index of each value in the file viewed as doubles
        self.slot_of: list[int] = []
        self.check_at = 0  # offset and bytes of the last key parsed: detects a replaced file
        self.check_key = b""
        self.fetch: Any = None  # gatherer of this file's values, in entry order
        self.align: Any = None  # gatherer putting them in slot order (0.0 where the file has none)
        self.aligned_to = -1  # number of slots `align` was built for; None: duplicate keys, no fast path

    def aligned(self, values: Any, slots: int) -> tuple[float, ...] | None:
        if self.fetch is None:
            self.fetch = _gatherer(self.value_at)
        if self.aligned_to != slots:
            if self.aligned_to is None:
                return None
            position = [len(self.value_at)] * slots  # that index is the 0.0 appended below
            for i, slot in enumerate(self.slot_of):
                if position[slot] != len(self.value_at):  # a key twice in one file: sum it the slow way
                    self.aligned_to = None
                    return None
                position[slot] = i
            self.align, self.aligned_to = _gatherer(position), slots
        return self.align(self.fetch(values) + (0.0,))


class MultiProcessExposition:
    """The text exposition of a multiprocess directory plus extra collectors, for one worker.

    Semantics are MultiProcessCollector's (accumulate=True) followed by generate_latest: counters
    and histogram series are summed over every file (live and dead processes) in the same order,
    histogram buckets made cumulative with `_count` their total, HELP from the first file a family
    was seen in. Per scrape, the work per value is done by C builtins (itemgetter, map, accumulate).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._files: dict[str, _FileIndex] = {}
        self._spaces = {typ: _Space() for typ in _FAST_TYPES}
        self._keys: dict[tuple[str, bytes], int] = {}  # (type, encoded key) -> slot in that type's space
        self._order = 0
        self._plan: Any = None
        self._plan_files: tuple | None = None
        self._formatted = _Formatted()
        # Per program step: the values it last rendered and their text. Between two scrapes most
        # series keep their values (tasks that did not run), so their text is reused as is.
        self._chunks: list[tuple[tuple, bytes]] | None = None

    # -- reading -----------------------------------------------------------------------------
    def _slot(self, typ: str, key: bytes) -> int:
        metric_name, name, labels, help_text = json.loads(key)
        labels_key = tuple(sorted(labels.items()))
        le = labels.get("le") if typ == "histogram" else None
        if le is not None:
            group = tuple(item for item in labels_key if item[0] != "le")
            what: Any = ("bucket", float(le))
        else:
            group = labels_key
            what = ("sample", name)
        space = self._spaces[typ]
        ident = (metric_name, group, what)
        slot = space.ids.get(ident)
        if slot is None:
            slot = space.ids[ident] = len(space.info)
            space.info.append((self._order, metric_name, help_text, group, what))
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
        pos = index.used
        grew = False
        while pos < used:  # entries appended since the last scrape (all of them, the first time)
            length = _INT.unpack_from(data, pos)[0]
            if length + pos > used:
                raise RuntimeError(f"Read beyond file size detected, {path} is corrupted.")
            key_at = pos + 4
            key = data[key_at : key_at + length]
            pos = key_at + length + (8 - (length + 4) % 8)
            slot = self._keys.get((typ, key))
            if slot is None:
                slot = self._keys[(typ, key)] = self._slot(typ, key)
            index.value_at.append(pos // 8)
            index.slot_of.append(slot)
            index.check_at, index.check_key = key_at, key
            pos += 16
            grew = True
        if grew:
            index.fetch, index.align = None, None
            if index.aligned_to is not None:
                index.aligned_to = -1
        index.used = used
        return index

    def _read(self, files: list[str]) -> tuple[dict[str, list[float]], tuple]:
        """Per type, the sum over files of each slot's value, added in file order from 0.0."""
        loaded = []
        maps = []
        try:
            for path in files:
                typ = os.path.basename(path).split("_")[0]
                try:
                    with open(path, "rb") as handle:
                        size = os.fstat(handle.fileno()).st_size
                        inode = os.fstat(handle.fileno()).st_ino
                        if size < 8 or size % 8:
                            continue
                        # Read in place: files only grow, and a deleted one stays mapped intact.
                        data = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
                except FileNotFoundError:
                    continue
                maps.append(data)
                used = _INT.unpack_from(data, 0)[0]
                if used <= 8 or used > size:
                    continue
                index = self._index(path, typ, data, used, inode)
                loaded.append((path, typ, index, memoryview(data).cast("d")))
            sums = {typ: [0.0] * len(space.info) for typ, space in self._spaces.items()}
            for _path, typ, index, values in loaded:
                total = sums[typ]
                aligned = index.aligned(values, len(total))
                if aligned is not None:
                    sums[typ] = list(map(add, total, aligned))
                else:
                    for at, slot in zip(index.value_at, index.slot_of):
                        total[slot] += values[at]
            seen = tuple((path, index.inode, len(index.value_at)) for path, _typ, index, _v in loaded)
        finally:
            for *_rest, values in loaded:
                values.release()
            for data in maps:
                data.close()
        return sums, seen

    # -- rendering ---------------------------------------------------------------------------
    def _build_plan(self) -> tuple[list[str], list[tuple[str, str, Any]]]:
        """Line prefixes (HELP/TYPE before each family's first line) and how to compute the values:
        families in order of first appearance; per label set: samples, cumulative buckets, _count."""
        present: dict[str, set[int]] = {typ: set() for typ in self._spaces}
        for path, _inode, count in self._plan_files or ():
            present[os.path.basename(path).split("_")[0]].update(self._files[path].slot_of[:count])
        families: dict[str, dict] = {}
        for order, typ, slot in sorted((self._spaces[t].info[s][0], t, s) for t, slots in present.items() for s in slots):
            _order, metric_name, help_text, group, what = self._spaces[typ].info[slot]
            family = families.setdefault(metric_name, {"type": typ, "help": help_text, "groups": {}})
            entry = family["groups"].setdefault(group, {"samples": [], "buckets": []})
            (entry["samples"] if what[0] == "sample" else entry["buckets"]).append((what[1], slot))
        prefixes: list[str] = []
        program: list[tuple[str, str, Any]] = []  # (op, type, gatherer over that type's sums)
        for metric_name, family in families.items():
            typ = family["type"]
            shown = escape_metric_name(metric_name + "_total" if typ == "counter" else metric_name, UNDERSCORES)
            doc = family["help"].replace("\\", r"\\").replace("\n", r"\n")
            header = f"# HELP {shown} {doc}\n# TYPE {shown} {typ}\n"
            first = len(prefixes)
            plain: list[int] = []  # consecutive sample lines are gathered in one go
            for group, entry in family["groups"].items():
                pairs = _label_pairs(group)
                for name, slot in entry["samples"]:
                    prefixes.append(_prefix(name, pairs))
                    plain.append(slot)
                if entry["buckets"]:
                    if plain:
                        program.append(("take", typ, _gatherer(plain)))
                        plain = []
                    slots = []
                    for le, slot in sorted(entry["buckets"]):
                        with_le = _label_pairs(tuple(sorted((*group, ("le", floatToGoString(le))))))
                        prefixes.append(_prefix(metric_name + "_bucket", with_le))
                        slots.append(slot)
                    prefixes.append(_prefix(metric_name + "_count", pairs))
                    program.append(("cumulative", typ, _gatherer(slots)))
            if plain:
                program.append(("take", typ, _gatherer(plain)))
            prefixes[first] = header + prefixes[first]
        return prefixes, program

    def render(self, extra_collectors: list[Any]) -> bytes:
        files = glob.glob(os.path.join(self.path, "*.db"))
        fast = [f for f in files if os.path.basename(f).split("_")[0] in _FAST_TYPES]
        other = [f for f in files if os.path.basename(f).split("_")[0] not in _FAST_TYPES]
        with self._lock:
            sums, seen = self._read(fast)
            if seen != self._plan_files or self._plan is None:
                self._plan_files = seen
                self._plan = self._build_plan()
                self._chunks = None
            prefixes, program = self._plan
            if self._chunks is None or len(self._chunks) != len(program):
                self._chunks = [((), b"")] * len(program)
            chunks = self._chunks
            out: list[bytes] = []
            start = 0
            for i, (op, typ, gather) in enumerate(program):
                picked = gather(sums[typ])
                lines = len(picked) + (op != "take")  # cumulative: the buckets, then _count
                last_picked, text = chunks[i]
                if picked != last_picked:  # only series whose values changed are formatted again
                    if op == "take":
                        values: Any = picked
                    else:
                        values = list(accumulate(picked))
                        values.append(values[-1])  # _count = the last cumulative bucket
                    parts: list[str] = [""] * (2 * lines)
                    parts[0::2] = prefixes[start : start + lines]
                    parts[1::2] = map(self._formatted.__getitem__, values)
                    text = "".join(parts).encode("utf-8")
                    chunks[i] = (picked, text)
                out.append(text)
                start += lines
            body = b"".join(out)
        registry = CollectorRegistry()
        registry.register(_Merged(other))
        for collector in extra_collectors:
            registry.register(collector)
        return body + generate_latest(registry)


class _Merged:
    """prometheus_client's own multiprocess merge, for the files the fast path does not handle."""

    def __init__(self, files: list[str]) -> None:
        self.files = files

    def collect(self) -> Any:
        return multiprocess.MultiProcessCollector.merge(self.files, accumulate=True) if self.files else []


def make_app(extra_collectors: list[Any]) -> Any:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    exposition = MultiProcessExposition(directory)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        if not authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or wrong bearer token\n"]
        reap_dead_processes(directory)
        body = exposition.render(extra_collectors)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def start_metrics_server(port: int, extra_collectors: list[Any], addr: str = "0.0.0.0") -> WSGIServer:
    server = make_server(addr, port, make_app(extra_collectors), ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="librarian-metrics", daemon=True).start()
    return server
