"""The validation sandbox: a forked child with a memory cap and a watchdog that SIGKILLs.

These use real native code where it matters: an infinite loop inside openNURBS (Layer.FullPath of
a layer that is its own parent), a real segmentation fault, real allocations under RLIMIT_AS.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rhino3dm as r3

from app.validation import UnreadableModelError, validate_path
from app.validation.guarded import validate_guarded
from app.validation.sandbox import Limits, run_sandboxed

LIMITS = Limits(memory_mb=512, timeout_s=20)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def self_parent_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose only layer is its own parent: rhino3dm's FullPath never returns on it."""
    model = r3.File3dm()
    layer = r3.Layer()
    layer.Name = "LOOP"
    model.Layers.Add(layer)
    stored = model.Layers[0]
    stored.ParentLayerId = stored.Id
    path = tmp_path_factory.mktemp("sandbox") / "self_parent.3dm"
    assert model.Write(str(path), 8)
    return path


def full_path_of_first_layer(path: str) -> str:
    return r3.File3dm.Read(path).Layers[0].FullPath  # loops forever in C++ on a self-parent layer


def test_the_report_is_the_engines_report(models) -> None:
    path = models["valid_part"]
    seen: list[int] = []
    report = validate_guarded(path, limits=LIMITS, progress=lambda pct, stage: seen.append(pct))
    direct = validate_path(path)
    for r in (report, direct):
        r["summary"].pop("duration_seconds")
    assert report == direct
    assert seen[0] == 0 and seen[-1] == 100


def test_native_code_that_never_returns_is_killed_at_the_timeout(self_parent_layer: Path) -> None:
    started = time.monotonic()
    outcome = run_sandboxed(full_path_of_first_layer, str(self_parent_layer), limits=Limits(512, 1.5))
    elapsed = time.monotonic() - started
    assert outcome.kind == "limit" and outcome.details["limit"] == "time"
    assert 1.5 <= elapsed < 4


def test_a_model_over_the_time_limit_gets_a_rejected_report(self_parent_layer: Path, tmp_path: Path) -> None:
    # the same loop through the report path: the file's facts are read before the child starts
    outcome = run_sandboxed(full_path_of_first_layer, str(self_parent_layer), limits=Limits(512, 0.5))
    assert outcome.kind == "limit"
    report = validate_guarded(ROOT / "tests/fixtures/real/v5_example_file.3dm", limits=Limits(512, 0.001))
    (finding,) = report["findings"]
    assert finding["code"] == "RESOURCE_LIMIT" and finding["details"]["limit"] == "time"
    assert finding["details"]["object_records"] == 35 and finding["details"]["archive_version"] == 50
    assert report["summary"]["passed"] is False
    json.dumps(report, allow_nan=False)


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def test_memory_over_the_cap_is_a_memory_limit_and_under_it_works() -> None:
    assert run_sandboxed(allocate, 100, limits=Limits(512, 20)).value == 100 * 1024 * 1024
    outcome = run_sandboxed(allocate, 1024, limits=Limits(256, 20))
    assert outcome.kind == "limit" and outcome.details["limit"] == "memory"
    assert outcome.details["limit_mb"] == 256


def segfault() -> None:
    ctypes.string_at(0)


def raises() -> None:
    raise KeyError("surprise")


def unreadable() -> None:
    raise UnreadableModelError("not a model", "not_3dm")


def test_every_way_a_child_can_end_has_an_outcome() -> None:
    crashed = run_sandboxed(segfault, limits=LIMITS)
    assert crashed.kind == "crash" and crashed.details["signal"] == "SIGSEGV"
    raised = run_sandboxed(raises, limits=LIMITS)
    assert raised.kind == "crash" and raised.details["exception"] == "KeyError"
    refused = run_sandboxed(unreadable, limits=LIMITS)
    assert refused.kind == "unreadable" and refused.unreadable.code == "not_3dm"
    assert run_sandboxed(os._exit, 3, limits=LIMITS).details["exit_code"] == 3


def test_an_interrupted_caller_leaves_no_child_behind(self_parent_layer: Path) -> None:
    children: list[int] = []

    def stop(*_: object) -> None:
        raise TimeoutError("the task's soft time limit")

    def loop_with_progress(path: str, progress) -> None:  # type: ignore[no-untyped-def]
        progress(1, str(os.getpid()))
        full_path_of_first_layer(path)

    def on_progress(_: int, pid: str) -> None:
        children.append(int(pid))
        stop()

    with pytest.raises(TimeoutError):
        run_sandboxed(loop_with_progress, str(self_parent_layer), limits=LIMITS, progress=on_progress)
    assert children and not _alive(children[0])


def test_the_child_dies_with_a_killed_worker(self_parent_layer: Path) -> None:
    """A worker killed by Celery's hard time limit or the OOM killer takes its child with it."""
    script = (
        "import os, sys\n"
        "from app.validation.sandbox import Limits, run_sandboxed\n"
        "from tests.validation.test_sandbox import full_path_of_first_layer\n"
        "def target(path, progress):\n"
        "    progress(0, str(os.getpid()))\n"
        "    full_path_of_first_layer(path)\n"
        "run_sandboxed(target, sys.argv[1], limits=Limits(512, 60),"
        " progress=lambda pct, pid: print(pid, flush=True))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, str(self_parent_layer)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    child = int(worker.stdout.readline())
    assert _alive(child)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
