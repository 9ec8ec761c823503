"""Shared pieces of the benchmarks: a real Valkey, real workers/APIs as subprocesses, statistics.

Processes are started exactly as the integration tests start them (tests/utils/processes.py):
each in its own process group, cwd the repository root (so `python -m bench...` children find the
`bench` package), stdout+stderr to a log file, stopped with SIGTERM then SIGKILL.
Nothing here imports `app.*` except app.core.embedded (no settings): the benchmark sets the
environment first, so the bench process and its children share one configuration.
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.utils.processes import ManagedProcess, cli, free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ROOT", "ManagedProcess", "Stack", "cli", "free_port", "machine", "percentile", "summary", "wait_http"]

QUEUES = "default,validation,pipeline,maintenance"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc={os.cpu_count()}, CPU={model}, Python {platform.python_version()}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


class Stack:
    """A temp directory, an embedded Valkey on a free port (AOF everysec, as deployed) and an env."""

    def __init__(self, prefix: str, *, keep: bool = False) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"librarian-bench-{prefix}-"))
        self.keep = keep
        self.server: Any = None
        self.processes: list[ManagedProcess] = []
        self.port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.port}/0"

    # -- environment -----------------------------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PROMETHEUS_MULTIPROC_DIR", "METRICS_TOKEN"):
            env.pop(key, None)
        env.update(
            ENVIRONMENT="production",
            ALLOW_ANONYMOUS="true",  # the benchmarks call the API without a token
            REDIS_URL=self.redis_url,
            VAR_DIR=str(self.tmp / "var"),
            STORAGE_DIR=str(self.tmp / "storage"),
            DATABASE_URL=f"sqlite:///{self.tmp / 'librarian.db'}",
            FLOWER_PASSWORD=secrets.token_hex(12),
            LOG_LEVEL="INFO",
            LOG_FORMAT="json",
            SENTRY_DSN="",
            PYTHONUNBUFFERED="1",  # as the Dockerfile sets: one write per log line
            PYTHONDONTWRITEBYTECODE="1",
            WORKER_CONCURRENCY="2",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        env.update(overrides)
        return env

    def export(self, **overrides: str) -> None:
        """Set the same environment in this process (before any `app` module is imported)."""
        os.environ.update(self.env(**overrides))

    # -- processes -------------------------------------------------------------------------
    def start_valkey(self) -> None:
        from app.core.embedded import embedded_server

        self.server = embedded_server(port=self.port, data_dir=self.tmp / "valkey", password=None)
        self.server.start()

    def redis(self, **kwargs: Any) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url, socket_timeout=30, **kwargs)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, env, self.tmp / "logs")
        self.processes.append(process)
        process.start()
        return process

    def start_librarian_worker(self, name: str, env: dict[str, str], *extra: str) -> ManagedProcess:
        """`librarian worker` (prefork, all queues, metrics on a free port); returns once ready.

        `extra` are Celery worker options appended to the command line `librarian worker` execs.
        """
        port = free_port()
        env = {**env, "WORKER_METRICS_PORT": str(port)}
        if extra:  # Celery options `librarian worker` does not take (e.g. -E): same code path, appended
            argv = [sys.executable, "-m", "bench.support.librarian_worker", "--name", f"{name}@%h", "--", *extra]
        else:
            argv = cli("worker", "--name", f"{name}@%h")
        process = self.spawn(name, argv, env)
        process.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        process.wait_for(r'"event": "worker ready"', timeout=90)
        process.wait_for(r'"event": "worker metrics listening"', timeout=15)
        return process

    def start_bare_worker(self, name: str, env: dict[str, str], *extra: str) -> ManagedProcess:
        """The bare Celery app (bench/baselines/bare_app.py) with the command line `librarian worker` execs."""
        statedb = self.tmp / "var" / f"worker-{name}.state"
        statedb.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.baselines.bare_app:app",
            "--quiet",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            env.get("WORKER_CONCURRENCY", "2"),
            "--queues",
            QUEUES,
            "--hostname",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            "--statedb",
            str(statedb),
            "--loglevel",
            env.get("LOG_LEVEL", "INFO"),
            *extra,
        ]
        process = self.spawn(name, argv, env)
        process.wait_for(r"\bready\.", timeout=90)
        return process

    def start_api(self, name: str, env: dict[str, str], workers: int = 1) -> tuple[ManagedProcess, str]:
        port = free_port()
        extra = ("--workers", str(workers)) if workers > 1 else ()
        process = self.spawn(name, cli("api", "--port", str(port), *extra), env)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health-check/redis", timeout=90, process=process)
        return process, base

    def start_bare_api(self, name: str, env: dict[str, str]) -> tuple[ManagedProcess, str]:
        port = free_port()
        argv = [sys.executable, "-m", "bench.baselines.bare_api", "--port", str(port)]
        process = self.spawn(name, argv, env)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/ok", timeout=90, process=process)
        return process, base

    def stop(self, process: ManagedProcess) -> None:
        process.stop()
        if process in self.processes:
            self.processes.remove(process)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self.server is not None and self.server.is_running():
            self.server.stop()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"(kept {self.tmp})")

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def wait_ids_done(client: Any, ids: list[str], timeout: float, poll: float = 0.2) -> bool:
    """Wait until every id's result is SUCCESS in the backend (pipelined GETs of the oldest 1,000
    pending ids every 0.2 s: a little Valkey load, the same for both sides of an A/B)."""
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        chunk = pending[:1000]
        pipe = client.pipeline(transaction=False)
        for task_id in chunk:
            pipe.get(f"celery-task-meta-{task_id}")
        done = set()
        for task_id, raw in zip(chunk, pipe.execute(), strict=True):
            if raw and b'"status": "SUCCESS"' in raw:
                done.add(task_id)
        pending = [t for t in pending if t not in done]
        if pending and len(done) < len(chunk):
            time.sleep(poll)
    return not pending


def fill_list(client: Any, key: str, depth: int) -> None:
    client.delete(key)
    chunk = 10000
    pipe = client.pipeline(transaction=False)
    for start in range(0, depth, chunk):
        pipe.rpush(key, *([b"x"] * min(chunk, depth - start)))
    pipe.execute()
    assert client.llen(key) == depth


def fill_keys(client: Any, total: int, have: int) -> None:
    """Dummy result keys, as a busy deployment holds for RESULT_EXPIRES (string values, no TTL here)."""
    chunk = 10000
    for start in range(have, total, chunk):
        client.mset({f"celery-task-meta-bench-{i:08d}": "{}" for i in range(start, min(total, start + chunk))})


_TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int, reaped: bool = False) -> tuple[int, float] | None:
    """(ppid, user+system CPU seconds) of one process, None when it is gone; with `reaped`, plus
    the CPU of the children it has waited for."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), sum(int(v) for v in fields[11 : 15 if reaped else 13]) / _TICK


def tree_cpu(*roots: int, reaped: bool = False) -> float:
    """CPU seconds (user+system) used so far by the processes `roots` and their live descendants;
    with `reaped`, also by the children they have waited for (short-lived ones, e.g. the
    validation sandbox's, which a live-process walk misses)."""
    info = {int(e): st for e in os.listdir("/proc") if e.isdigit() and (st := proc_stat(int(e), reaped)) is not None}
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in info:
            continue
        seen.add(pid)
        total += info[pid][1]
        todo.extend(child for child, (parent, _) in info.items() if parent == pid)
    return total


def process_cpu(pid: int) -> float:
    """CPU seconds (user+system) used so far by one process, without its children."""
    info = proc_stat(pid)
    return info[1] if info is not None else 0.0


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / _TICK, total / _TICK


class CpuWindow:
    """CPU used by some process trees, and by everything else on the machine, over a window."""

    def __init__(self, roots: dict[str, int], singles: dict[str, int] | None = None) -> None:
        """`roots`: process trees (a process and its descendants); `singles`: one process each,
        reported apart and not counted again in "foreign" (e.g. a worker's main process, whose tree
        is also a root)."""
        self.roots = roots
        self.singles = singles or {}
        self.start = {name: tree_cpu(pid) for name, pid in roots.items()}
        self.single_start = {name: process_cpu(pid) for name, pid in self.singles.items()}
        self.machine = machine_busy()
        self.self_start = self_cpu()

    def stop(self) -> dict[str, float]:
        """{name: cpu seconds, ..., 'foreign': cpu seconds of all other processes, 'wall_cpus': ...}."""
        used = {name: tree_cpu(pid) - self.start[name] for name, pid in self.roots.items()}
        singles = {name: process_cpu(pid) - self.single_start[name] for name, pid in self.singles.items()}
        busy, total = machine_busy()
        used["bench"] = self_cpu() - self.self_start
        used["machine"] = busy - self.machine[0]
        used["capacity"] = total - self.machine[1]
        used["foreign"] = max(
            0.0, used["machine"] - sum(v for k, v in used.items() if k not in ("machine", "capacity"))
        )
        return {**used, **singles}


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)
