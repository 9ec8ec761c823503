"""Temporary copies of stored objects (settings.storage_tmp_dir), and the sweep at worker start.

Each name carries the host and pid of the process that made it (`<host>-<pid>-<random>.<ext>`):
a worker starting sweeps the files of dead processes of its own host (a SIGKILLed task leaves its
copy behind) and any file older than TASK_TIME_LIMIT (no task holds one longer), never a copy that
a live worker sharing the directory is reading.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

_SEP = "-"


def _host() -> str:
    return socket.gethostname().replace(_SEP, "_")[:60] or "host"


def new_temp_path(directory: Path, suffix: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{_host()}{_SEP}{os.getpid()}{_SEP}{secrets.token_hex(8)}{suffix[:16]}"


@contextlib.contextmanager
def temp_path(directory: Path, suffix: str = "") -> Iterator[Path]:
    """A fresh path in `directory`, removed when the block ends (SIGKILL aside: the sweep's job)."""
    path = new_temp_path(directory, suffix)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def sweep(directory: Path, *, max_age_s: float) -> int:
    """Remove the copies left by dead processes of this host, and any older than `max_age_s`.
    Returns how many were removed."""
    if not directory.is_dir():
        return 0
    host, now, removed = _host(), time.time(), 0
    for path in directory.iterdir():
        owner, _, rest = path.name.partition(_SEP)
        pid_text = rest.partition(_SEP)[0]
        try:
            old = now - path.lstat().st_mtime > max_age_s
        except FileNotFoundError:
            continue
        orphan = owner == host and pid_text.isdigit() and not _pid_alive(int(pid_text))
        if old or orphan:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                path.unlink()
                removed += 1
    return removed
