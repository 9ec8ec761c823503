"""What the worker's fast /metrics assumes about prometheus_client, one check per `# private:` id.

app/observability/metrics_files.py reads prometheus_client's multiprocess files itself and
metrics_render.py reproduces its text; lines relying on something private are marked
`# private: <id>`. `CHECKS` maps each id to a function raising AssertionError (naming the installed
version, what changed and how to fix) when the installed prometheus_client no longer behaves so.
The files are written by real processes through prometheus_client's public metric classes.
Until a failing check is fixed, `METRICS_EXPOSITION=stock` serves /metrics without any of this.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import inspect
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

VERSION = version("prometheus-client")
STOCK = "or set METRICS_EXPOSITION=stock until it is fixed"
# Label values needing escapes, and keys of every length modulo 8 (the padding after a key).
KINDS = ("a", 'q"uote', "back\\slash", "new\nline", "ünï cödé", *("x" * k for k in range(1, 9)))
HELP = "Events, with a \\ and a\nnewline in the help"
BOUNDS = (0.5, 1.0, 2.5)
OBSERVED = (0.1, 0.7, 3.0)
FILLER = 1500  # entries enough to grow a file past prometheus_client's initial 64 KiB mapping

WRITER = f"""
import os, sys
from prometheus_client import Counter, Gauge, Histogram
n, filler, later = (int(arg) for arg in sys.argv[1:4])
kinds, help_text, bounds, observed = {(KINDS, HELP, BOUNDS, OBSERVED)!r}
events = Counter("contract_events", help_text, ["kind"])
for i, kind in enumerate(kinds):
    events.labels(kind).inc(n + i)
for i in range(filler):
    events.labels(f"filler-{{i:05d}}").inc(n)
seconds = Histogram("contract_seconds", "Durations", ["kind"], buckets=bounds)
for value in observed:
    seconds.labels("a").observe(value * n)
Gauge("contract_live", "Live things", multiprocess_mode="livesum").inc(n)
Gauge("contract_max", "Largest thing", multiprocess_mode="max").set(n)
print(os.getpid(), flush=True)
if later:  # a second batch when told on stdin: an old series updated, new ones appended
    sys.stdin.readline()
    events.labels(kinds[0]).inc(100)
    for i in range(later):
        events.labels(f"later-{{i:05d}}").inc(1)
    seconds.labels("b").observe(0.7)
    print("done", flush=True)
    sys.stdin.readline()
"""


def _changed(what: str, fix: str) -> AssertionError:
    return AssertionError(f"prometheus_client {VERSION} changed {what}: {fix}, {STOCK}")


def _ours(module: str) -> Any:
    """app.observability.<module>, or AssertionError when it no longer imports against this prometheus_client."""
    try:
        return importlib.import_module(f"app.observability.{module}")
    except ImportError as error:
        raise _changed(f"a name app/observability/{module}.py imports ({error})", "adapt that import") from error


def _writer(directory: str, n: int, filler: int = 0, later: int = 0) -> subprocess.Popen:
    env = {"PROMETHEUS_MULTIPROC_DIR": directory, "PATH": os.environ.get("PATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(n), str(filler), str(later)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _tempdir() -> str:
    path = tempfile.mkdtemp(prefix="prometheus-contract-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def _written() -> tuple[str, tuple[int, ...]]:
    """A directory written by two finished processes (n=1 with a grown file, n=2), and their pids."""
    directory = _tempdir()
    pids = []
    for n, filler in ((1, FILLER), (2, 10)):
        writer = _writer(directory, n, filler)
        out, _ = writer.communicate(timeout=30)
        assert writer.returncode == 0, f"the writer process failed ({writer.returncode})"
        pids.append(int(out.split()[0]))
    return directory, tuple(pids)


def _expected(ns: tuple[int, ...], fillers: tuple[int, ...]) -> dict[tuple, float]:
    """{(family, sample name, labels, le): value} that writers n in `ns` put in the files."""
    want: dict[tuple, float] = {}

    def add(key: tuple, amount: float) -> None:
        want[key] = want.get(key, 0.0) + amount

    for n, filler in zip(ns, fillers, strict=True):
        for i, kind in enumerate(KINDS):
            add(("contract_events", "contract_events_total", (("kind", kind),), None), n + i)
        for i in range(filler):
            add(("contract_events", "contract_events_total", (("kind", f"filler-{i:05d}"),), None), n)
        for bound in (*BOUNDS, math.inf):
            add(("contract_seconds", "contract_seconds_bucket", (("kind", "a"),), bound), 0.0)
        for value in OBSERVED:
            bound = next(b for b in (*BOUNDS, math.inf) if value * n <= b)
            add(("contract_seconds", "contract_seconds_bucket", (("kind", "a"),), bound), 1.0)
            add(("contract_seconds", "contract_seconds_sum", (("kind", "a"),), None), value * n)
    return want


@contextmanager
def _reading(what: str) -> Iterator[None]:
    try:
        yield
    except AssertionError:
        raise
    except Exception as error:  # any failure of the reader means the layout moved
        raise _changed(what, f"the reader failed with {error!r}; adapt app/observability/metrics_files.py") from error


def _read(reader, directory: str) -> dict[tuple, float]:  # type: ignore[no-untyped-def]
    reading = reader.read(_ours("metrics_files").list_files(directory)[0])
    return {
        (s.family, s.name, s.labels, s.le): reading.sums[typ][slot] for typ, slot, s in reader.present(reading.seen)
    }


def _differences(got: dict[tuple, float], want: dict[tuple, float]) -> list[str]:
    wrong = [
        f"{key}: read {got.get(key)}, written {value}"
        for key, value in want.items()
        if key not in got or not math.isclose(got[key], value)
    ]
    return wrong + [f"{key}: read {got[key]}, never written" for key in got.keys() - want.keys()]


def check_mmap_layout() -> None:
    MultiProcessFiles = _ours("metrics_files").MultiProcessFiles
    directory, _ = _written()
    with _reading("the mmap file layout (int32 used at 0; entries: int32 length, key, 8-byte padding, 2 doubles)"):
        got = _read(MultiProcessFiles(), directory)
    wrong = _differences(got, _expected((1, 2), (FILLER, 10)))
    if wrong:
        raise _changed(
            "the mmap file layout: values written by Counter/Histogram read back differently",
            f"adapt MultiProcessFiles in app/observability/metrics_files.py ({len(wrong)} wrong: {wrong[:3]})",
        )


def check_mmap_key() -> None:
    MultiProcessFiles = _ours("metrics_files").MultiProcessFiles
    directory, _ = _written()
    with _reading("the mmap key (JSON [metric name, sample name, labels, help])"):
        reader = MultiProcessFiles()
        _read(reader, directory)
    series = [s for by_slot in reader.series.values() for s in by_slot]
    names = {(s.family, s.name, s.le is not None) for s in series}
    want = {
        ("contract_events", "contract_events_total", False),
        ("contract_seconds", "contract_seconds_sum", False),
        ("contract_seconds", "contract_seconds_bucket", True),
    }
    helps = {s.family: s.help for s in series}
    bounds = sorted({s.le for s in series if s.le is not None})
    want_helps = {"contract_events": HELP, "contract_seconds": "Durations"}
    labels = {s.labels for s in series if s.family == "contract_seconds"}
    if names != want or helps != want_helps or bounds != [*BOUNDS, math.inf] or labels != {(("kind", "a"),)}:
        raise _changed(
            "the mmap key or which samples multiprocess files hold (expected a counter's `_total`, a histogram's "
            f"`_sum` and per-bucket `_bucket` with `le`; read {sorted(names)}, help {helps}, le {bounds}, "
            f"labels {labels})",
            "adapt MultiProcessFiles._slot in app/observability/metrics_files.py",
        )


def check_mmap_append_only() -> None:
    MultiProcessFiles = _ours("metrics_files").MultiProcessFiles
    directory = _tempdir()
    writer = _writer(directory, 1, filler=0, later=FILLER)
    try:
        assert writer.stdin and writer.stdout
        writer.stdout.readline()
        reader = MultiProcessFiles()  # keeps where each value lives between reads, as a worker does
        with _reading("how mmap files grow"):
            _read(reader, directory)
            writer.stdin.write("go\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "done", "the writer process failed"
            again = _read(reader, directory)
            fresh = _read(MultiProcessFiles(), directory)
    finally:
        writer.kill()
        writer.wait()
    wrong = _differences(again, fresh)
    if wrong or fresh.get(("contract_events", "contract_events_total", (("kind", "a"),), None)) != 101.0:
        raise _changed(
            "how mmap files grow: an entry no longer keeps its offset while new series are appended",
            f"re-index every file on each read in app/observability/metrics_files.py ({wrong[:3]})",
        )


def check_multiprocess_filenames() -> None:
    files = _ours("metrics_files")
    file_type, list_files, reap_dead_processes = files.file_type, files.list_files, files.reap_dead_processes

    written, pids = _written()
    directory = _tempdir()
    shutil.copytree(written, directory, dirs_exist_ok=True)
    names = set(os.listdir(directory))
    want = {f"{kind}_{pid}.db" for pid in pids for kind in ("counter", "histogram", "gauge_livesum", "gauge_max")}
    if names != want:
        raise _changed(
            f"the multiprocess file names (expected {sorted(want)}, found {sorted(names)})",
            "adapt file_type and _LIVE_FILE in app/observability/metrics_files.py",
        )
    fast, other = list_files(directory)
    types = {os.path.basename(f): file_type(f) for f in fast + other}
    if any(not name.startswith(typ + "_") for name, typ in types.items()) or len(fast) != 2 * len(pids):
        raise _changed(f"the multiprocess file names ({types})", "adapt file_type in metrics_files.py")
    reap_dead_processes(Path(directory))  # both writers have exited: their live gauges go
    gone = names - set(os.listdir(directory))
    if gone != {f"gauge_livesum_{pid}.db" for pid in pids}:
        raise _changed(
            f"the live gauge file names mark_process_dead removes (removed {sorted(gone)})",
            "adapt _LIVE_FILE in app/observability/metrics_files.py",
        )


def _samples(metric) -> set[tuple]:  # type: ignore[no-untyped-def]
    return {(s.name, tuple(sorted(s.labels.items())), s.value) for s in metric.samples}


def check_merge() -> None:
    from prometheus_client import multiprocess

    files = _ours("metrics_files")

    directory, _ = _written()
    merge = getattr(multiprocess.MultiProcessCollector, "merge", None)
    parameters = list(inspect.signature(merge).parameters) if callable(merge) else []
    if parameters[:2] != ["files", "accumulate"]:
        raise _changed(
            f"MultiProcessCollector.merge (expected merge(files, accumulate=True), found {parameters or merge!r})",
            "call its replacement in MergedFiles (app/observability/metrics_files.py)",
        )
    _fast, other = files.list_files(directory)
    got = {m.name: _samples(m) for m in files.MergedFiles(other).collect()}
    stock = {m.name: _samples(m) for m in multiprocess.MultiProcessCollector(None, path=directory).collect()}
    if set(got) != {"contract_live", "contract_max"} or any(got[name] != stock[name] for name in got):
        raise _changed(
            f"MultiProcessCollector.merge over gauge files (merged {got}, collected {stock})",
            "adapt MergedFiles in app/observability/metrics_files.py",
        )


class _Families:
    """A collector yielding fixed families (no value class: independent of multiprocess mode)."""

    def __init__(self, *families) -> None:  # type: ignore[no-untyped-def]
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        return self.families


def _generate(*families) -> str:  # type: ignore[no-untyped-def]
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(_Families(*families))
    return generate_latest(registry).decode()


def check_escape() -> None:
    from prometheus_client.metrics_core import GaugeMetricFamily
    from prometheus_client.openmetrics import exposition as openmetrics

    escape = getattr(openmetrics, "_escape", None)
    text = 'a\\b\n"c" ünï'
    try:
        escaped = escape(text, openmetrics.ALLOWUTF8, False)  # type: ignore[misc]
    except Exception as error:  # noqa: BLE001 (gone, renamed or another signature: all the same fix)
        escaped = repr(error)
    if escaped != 'a\\\\b\\n\\"c\\" ünï':
        raise _changed(
            f"openmetrics.exposition._escape(value, ALLOWUTF8, False) (gave {escaped!r})",
            "escape label values as generate_latest now does in _label_pairs (app/observability/metrics_render.py)",
        )
    family = GaugeMetricFamily("contract_escaped", "Escaping", labels=["kind"])
    family.add_metric([text], 1.0)
    ours = "contract_escaped{" + ",".join(_ours("metrics_render")._label_pairs((("kind", text),))) + "} 1.0"
    if ours not in _generate(family).splitlines():
        raise _changed(
            f"how generate_latest escapes label values (ours: {ours!r})",
            "escape label values as generate_latest now does in _label_pairs (app/observability/metrics_render.py)",
        )


def check_float_to_go_string() -> None:
    from prometheus_client.metrics_core import GaugeMetricFamily

    try:
        from prometheus_client.utils import floatToGoString
    except ImportError as error:
        fix = "import its replacement in app/observability/metrics_render.py"
        raise _changed("prometheus_client.utils.floatToGoString (gone)", fix) from error
    values = (0.0, 1.0, 0.1, 2.5, 1e6, 1e-7, 123456789.0, 1e22, -3.0, math.inf, -math.inf, math.nan)
    family = GaugeMetricFamily("contract_values", "Values", labels=["i"])
    for i, value in enumerate(values):
        family.add_metric([str(i)], value)
    lines = [line for line in _generate(family).splitlines() if not line.startswith("#")]
    ours = [f'contract_values{{i="{i}"}} {floatToGoString(value)}' for i, value in enumerate(values)]
    if lines != ours:
        raise _changed(
            f"how generate_latest formats values (generate_latest {lines[:4]}..., floatToGoString {ours[:4]}...)",
            "format values as generate_latest now does in app/observability/metrics_render.py",
        )


def check_exposition_text() -> None:
    render = _ours("metrics_render")
    directory, _ = _written()
    with _reading("what the fast path renders"):
        fast = render.MultiProcessExposition(directory).render([]).decode()
    stock = render.StockExposition(directory).render([]).decode()
    extra, missing = set(fast.splitlines()) - set(stock.splitlines()), set(stock.splitlines()) - set(fast.splitlines())
    if extra or missing or len(fast.splitlines()) != len(stock.splitlines()):
        raise _changed(
            "the text of MultiProcessCollector + generate_latest (fast and stock differ: only in fast "
            f"{sorted(extra)[:3]}, only in stock {sorted(missing)[:3]})",
            "make build_plan in app/observability/metrics_render.py write what stock writes",
        )


CHECKS: dict[str, Callable[[], None]] = {
    "prometheus_client.mmap_layout": check_mmap_layout,
    "prometheus_client.mmap_key": check_mmap_key,
    "prometheus_client.mmap_append_only": check_mmap_append_only,
    "prometheus_client.multiprocess_filenames": check_multiprocess_filenames,
    "prometheus_client.multiprocess.merge": check_merge,
    "prometheus_client.openmetrics._escape": check_escape,
    "prometheus_client.utils.floatToGoString": check_float_to_go_string,
    "prometheus_client.exposition_text": check_exposition_text,
}
