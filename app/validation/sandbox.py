"""Model work in a child process with a memory cap and a wall-clock watchdog.

A model can hold native code for as long as it likes (a layer that is its own parent makes
openNURBS loop forever) or ask for gigabytes (zlib-compressed mesh arrays expand ~1000:1), and
neither Celery's soft time limit nor a Python signal handler can interrupt code inside rhino3dm.
So everything that reads a model runs in a forked child that the caller supervises:

* the child's address space is capped at what it had when forked plus `memory_mb`
  (RLIMIT_AS; resident memory is always below it), and it dumps no core;
* the parent waits on a pipe with a deadline and SIGKILLs the child at `timeout_s`;
* the child sends progress lines and then its result as JSON lines; the parent turns every way a
  child can end into an Outcome: a value, an unreadable file, a limit (time or memory, with the
  measured time and peak) or a crash (a signal, an exit without a result, an exception). None is
  worth retrying: the same file would do the same again.

A child also takes with it every page rhino3dm never frees, so the worker does not grow per model.
Why a plain fork and not multiprocessing: Celery's pool children are daemonic and may not start
processes, and the child needs nothing pickled. Why RLIMIT_AS and not a cgroup: it needs no
privileges. Linux only for the memory cap (elsewhere the watchdog still applies).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import UnreadableModelError

MIB = 1024 * 1024
_MAX_RESULT_BYTES = 256 * MIB  # a child that says more than this is killed (reports are capped far below)
_MEMORY_EXIT = 86  # the child ran out of its memory cap where Python could still tell
_SAMPLE_S = 0.05  # how often the parent samples the child's address space
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
Progress = Callable[[int, str], None]


@dataclass(frozen=True)
class Limits:
    memory_mb: int  # address space the child may add to the worker's; 0: no cap
    timeout_s: float


class SandboxStartError(OSError):
    """The child could not be started (no pipe, no fork): the machine's trouble, worth a retry."""


@dataclass
class Outcome:
    """How a sandboxed call ended. `kind`: value, unreadable, limit or crash (guarded.py adds
    too_large, for a file refused before any child starts)."""

    kind: str
    value: Any = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # measured seconds and memory, limit, signal, ...
    unreadable: UnreadableModelError | None = None


def run_sandboxed(
    target: Callable[..., Any], *args: Any, limits: Limits, progress: Progress | None = None, **kwargs: Any
) -> Outcome:
    """Call `target(*args, **kwargs)` (its result JSON-safe) in a child under `limits`. A `progress`
    keyword is passed to the target when the caller gives one; its calls reach `progress` here."""
    base_vm_kib, parent = _status_kib("VmSize"), os.getpid()
    try:
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        pid = os.fork()
    except OSError as exc:
        raise SandboxStartError(exc.errno, f"cannot start the validation sandbox: {exc.strerror}") from exc
    if pid == 0:  # pragma: no cover (the child never returns)
        os.close(read_fd)
        _child(write_fd, parent, limits, target, args, kwargs, with_progress=progress is not None)
    os.close(write_fd)
    reaped = False
    try:
        lines, timed_out, (vm_peak_kib, hwm_kib) = _supervise(pid, read_fd, started + limits.timeout_s, progress)
        _, status, usage = os.wait4(pid, 0)
        reaped = True
    finally:
        os.close(read_fd)
        if not reaped:  # the caller was interrupted (soft time limit, progress callback): no orphan
            _kill(pid)
            os.waitpid(pid, 0)
    max_rss_kib = usage.ru_maxrss if sys.platform.startswith("linux") else usage.ru_maxrss // 1024
    # The child's peak resident size, sampled or from its rusage at exit: the model's memory plus
    # the worker's pages it touched (shared with the worker, not copied).
    measured = {
        "seconds": round(time.monotonic() - started, 3),
        "peak_rss_mb": round(max(hwm_kib, max_rss_kib) / 1024, 1),
    }
    near_cap = bool(limits.memory_mb) and (vm_peak_kib - base_vm_kib) / 1024 >= 0.9 * limits.memory_mb
    return _outcome(lines, status, timed_out, near_cap, measured, limits)


def _supervise(
    pid: int, fd: int, deadline: float, progress: Progress | None
) -> tuple[list[Any], bool, tuple[int, int]]:
    """Read the child's JSON lines until it closes the pipe or the deadline passes (then SIGKILL).
    Also samples the child's peak address space and resident size (KiB), which a crash or a
    SIGKILL takes with it."""
    lines: list[Any] = []
    buffer, received, vm_peak, hwm = bytearray(), 0, 0, 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _kill(pid)
            return lines, True, (vm_peak, hwm)
        vm_peak, hwm = _peaks(pid, vm_peak, hwm)
        ready, _, _ = select.select([fd], [], [], min(remaining, _SAMPLE_S))
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return lines, False, (vm_peak, hwm)
        received += len(chunk)
        if received > _MAX_RESULT_BYTES:
            _kill(pid)
            return [], False, (vm_peak, hwm)
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            message = json.loads(bytes(buffer[:end]))
            del buffer[: end + 1]
            if "progress" not in message:
                lines.append(message)
            elif progress is not None:
                progress(*message["progress"])


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _child(
    fd: int,
    parent: int,
    limits: Limits,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    with_progress: bool,
) -> None:  # pragma: no cover (runs in the forked child)
    code = 0
    try:
        _die_with_parent(parent)
        faulthandler.disable()  # a crash is the parent's to report, not a traceback on the worker's stderr
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)  # the worker's handlers are not the child's
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        cap = 0
        if limits.memory_mb > 0 and sys.platform.startswith("linux"):
            cap = _status_kib("VmSize") * 1024 + limits.memory_mb * MIB
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        out = os.fdopen(fd, "wb", buffering=0)

        def send(message: dict[str, Any]) -> None:
            out.write(json.dumps(message, allow_nan=False).encode() + b"\n")

        if with_progress:
            kwargs = {**kwargs, "progress": lambda pct, stage: send({"progress": [pct, stage]})}
        try:
            message: dict[str, Any] = {"value": target(*args, **kwargs)}
        except UnreadableModelError as exc:
            message = {"unreadable": {"code": exc.code, "reason": exc.reason}}
        except MemoryError:
            os.write(fd, b'{"memory":true}\n')  # no allocation left to build anything bigger
            code = _MEMORY_EXIT
            return
        except Exception as exc:  # noqa: BLE001 (reported to the parent, which decides)
            message = {"error": {"type": type(exc).__name__, "message": str(exc)[:1000]}}
        if cap and _status_kib("VmPeak") * 1024 >= cap - limits.memory_mb * MIB // 10:
            # Within 10 % of the cap: openNURBS may have dropped what it could not allocate
            # (objects missing, "corrupt"), so whatever came back is not the model's verdict.
            os.write(fd, b'{"memory":true}\n')
            return
        send(message)
    except MemoryError:
        code = _MEMORY_EXIT
    except BaseException:  # noqa: BLE001 (nothing may escape a forked child)
        code = 1
    finally:
        os._exit(code)


def _peaks(pid: int, vm_peak: int, hwm: int) -> tuple[int, int]:
    """The child's VmPeak and VmHWM so far (KiB)."""
    status = _status(pid, "VmPeak", "VmHWM")
    return max(vm_peak, status.get("VmPeak", 0)), max(hwm, status.get("VmHWM", 0))


def _die_with_parent(parent: int) -> None:  # pragma: no cover (runs in the forked child)
    """SIGKILL this child when the worker process dies (Celery's hard time limit, an OOM kill), so
    no validation outlives its task. Linux's prctl(PR_SET_PDEATHSIG); nothing to do elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _status_kib(name: str, pid: int | str = "self") -> int:
    """One Vm* figure of a process in KiB (0 where /proc or the figure is not there)."""
    return _status(pid, name).get(name, 0)


def _status(pid: int | str, *names: str) -> dict[str, int]:
    """Vm* figures (KiB) from one read of /proc/<pid>/status."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in names:
                    found[name] = int(value.split()[0])
    except OSError:
        pass
    return found


def _outcome(
    lines: list[Any], status: int, timed_out: bool, near_cap: bool, measured: dict[str, Any], limits: Limits
) -> Outcome:
    """A child killed by a signal after its address space came within 10 % of the cap ran out of
    memory: openNURBS does not check every allocation, so an exhausted cap often ends in SIGSEGV
    or SIGABRT rather than a MemoryError."""
    final = lines[-1] if lines else {}
    if "value" in final:
        return Outcome("value", value=final["value"], details=measured)
    if "unreadable" in final:
        error = UnreadableModelError(final["unreadable"]["reason"], final["unreadable"]["code"])
        return Outcome("unreadable", message=error.reason, details=measured, unreadable=error)
    if timed_out:
        return Outcome(
            "limit",
            message=f"stopped after {limits.timeout_s:g} s (VALIDATION_TIMEOUT_S)",
            details={"limit": "time", **measured, "limit_seconds": limits.timeout_s},
        )
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    if "memory" in final or exit_code == _MEMORY_EXIT or (signum is not None and near_cap):
        return Outcome(
            "limit",
            message=f"needed more than {limits.memory_mb} MB (VALIDATION_MAX_MEMORY_MB)",
            details={"limit": "memory", **measured, "limit_mb": limits.memory_mb},
        )
    if "error" in final:
        return Outcome(
            "crash",
            message=f"the engine raised {final['error']['type']}: {final['error']['message']}",
            details={"exception": final["error"]["type"], **measured},
        )
    if signum is not None:
        name = signal.Signals(signum).name
        return Outcome(
            "crash",
            message=f"the engine was killed by {name}",
            details={"signal": name, **measured, "memory_cap_mb": limits.memory_mb},
        )
    return Outcome(
        "crash",
        message=f"the engine exited with code {exit_code} and no result",
        details={"exit_code": exit_code, **measured},
    )
