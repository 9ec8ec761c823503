"""The worker-start sweep: copies of dead processes and old ones go, a live worker's copy stays."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from app.storage import tempfiles


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sweep_removes_dead_processes_copies_and_old_ones_and_keeps_live_ones(tmp_path):
    host = tempfiles._host()
    live = tempfiles.new_temp_path(tmp_path, ".3dm")  # this process: alive
    live.write_bytes(b"in use")
    dead = tmp_path / f"{host}-{dead_pid()}-0123456789abcdef.3dm"
    dead.write_bytes(b"left by a SIGKILLed task")
    other_host = tmp_path / "elsewhere-1-0123456789abcdef.3dm"  # another host's worker: not ours to judge
    other_host.write_bytes(b"maybe in use")
    old = tmp_path / "elsewhere-2-0123456789abcdef.3dm"
    old.write_bytes(b"older than any task may run")
    past = time.time() - 3600
    os.utime(old, (past, past))

    assert tempfiles.sweep(tmp_path, max_age_s=1800) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_host.name])
    assert tempfiles.sweep(tmp_path / "absent", max_age_s=1) == 0


def test_temp_path_is_removed_when_the_block_fails(tmp_path):
    try:
        with tempfiles.temp_path(tmp_path, ".3dm") as path:
            path.write_bytes(b"copy")
            raise RuntimeError("the reader crashed")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
