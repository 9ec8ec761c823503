"""Fault-injection harness: one isolated stack (Redis DB or own Valkey, SQLite file, storage, processes).

Every scenario builds a `Stack` on its own Redis database (7–15 of the session broker) or on its own
embedded Valkey, with its own database (a SQLite file, or a new database on the harness's PostgreSQL
when LIBRARIAN_TEST_DATABASE=postgresql), storage and var dirs, and stops everything in teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from tests.conftest import TMP, stack_database_url, stack_env
from tests.utils.processes import ManagedProcess, cli, free_port, wait_http, wait_until

SOAK = os.environ.get("LIBRARIAN_SOAK") == "1"

# Short limits so that a SIGKILLed worker's messages come back within seconds, and the start-up
# check still passes: visibility (7) > hard limit (4) + max countdown (2).
FAST_REDELIVERY = {
    "BROKER_VISIBILITY_TIMEOUT": "7",
    "TASK_TIME_LIMIT": "4",
    "TASK_SOFT_TIME_LIMIT": "3",
    "MAX_TASK_COUNTDOWN": "2",
    "BROKER_RECOVERY_GRACE": "2",
}


def report(scenario: str, **figures: Any) -> None:
    """Print one scenario's figures (visible with `pytest -s`, and in the captured output on failure)."""
    print(f"\n[reliability] {scenario}: " + json.dumps(figures, default=str, sort_keys=True), flush=True)


def redis_db_url(broker: Any, db: int) -> str:
    """The session broker's database `db` (7–15 are the reliability suite's), flushed."""
    assert 7 <= db <= 15, "the reliability suite owns Redis databases 7-15"
    return broker.db_url(db)


def own_valkey(name: str, *, password: str, port: int | None = None, **config: Any):  # type: ignore[no-untyped-def]
    """A started embedded Valkey of our own (for scenarios that kill or stop the broker)."""
    from app.core.embedded import embedded_server

    server = embedded_server(
        port=port or free_port(), data_dir=TMP / "reliability" / name / "valkey", password=password, **config
    )
    server.start()
    return server


def valkey_url(password: str, port: int, db: int = 0) -> str:
    return f"redis://:{password}@127.0.0.1:{port}/{db}"


def pool_children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (a /proc scan: no psutil)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def process_state(pid: int) -> str:
    """The one-letter state of a process (R, S, T, Z ...), '' when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def kill_group_hard(process: ManagedProcess) -> None:
    """SIGKILL the main process, then its whole group (orphaned pool children too), and reap it."""
    if process.process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.process.wait(timeout=10)


class Stack:
    """An isolated Librarian stack for one scenario module."""

    def __init__(self, name: str, redis_url: str, **env: str) -> None:
        self.name = name
        self.root = TMP / "reliability" / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.db_path = self.root / "librarian.db"  # on SQLite runs
        self.database_url = stack_database_url(self.db_path)
        self.storage_dir = self.root / "storage"
        self.var_dir = self.root / "var"
        self.env = stack_env(
            REDIS_URL=redis_url,
            DATABASE_URL=self.database_url,
            STORAGE_DIR=str(self.storage_dir),
            VAR_DIR=str(self.var_dir),
            **env,
        )
        self.processes: list[ManagedProcess] = []
        self._producer: Any = None
        self._engine: Engine | None = None
        self._starts = 0

    # -- processes ------------------------------------------------------------------------------

    def _log_name(self, label: str) -> str:
        self._starts += 1
        return f"rel-{self.name}-{label}-{self._starts}"

    def start_worker(
        self,
        node: str,
        *,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
        ready_timeout: float = 60,
    ) -> ManagedProcess:
        """A real `librarian worker` (prefork). Its log file is new for every start, so a restart
        with the same node name never matches the previous run's 'worker ready'."""
        port = free_port()
        worker_env = {**self.env, **(env or {}), "WORKER_METRICS_PORT": str(port)}
        process = ManagedProcess(
            self._log_name(node), cli("worker", "--name", f"{node}@%h", *extra), worker_env, TMP / "logs"
        )
        process.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
        process.node = node  # type: ignore[attr-defined]
        self.processes.append(process)  # registered first: a failed start is still stopped
        process.start()
        if wait:
            process.wait_for(r'"event": "worker ready"', timeout=ready_timeout)
            process.wait_for(r'"event": "worker metrics listening"', timeout=20)
        return process

    def start_api(self, label: str = "api", *, env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
        port = free_port()
        process = ManagedProcess(
            self._log_name(label), cli("api", "--port", str(port)), {**self.env, **(env or {})}, TMP / "logs"
        )
        self.processes.append(process)
        process.start()
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", timeout=60, process=process)
        process.base_url = base  # type: ignore[attr-defined]
        return process, base

    def stop_workers(self) -> None:
        """Stop (warm shutdown) every worker this stack started, so the next test has the queues to itself."""
        for process in self.processes:
            if hasattr(process, "node") and process.alive():
                process.stop(timeout=15)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                if process.process is not None and process_state(process.pid) == "T":
                    os.killpg(process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            process.stop(timeout=15)
        if self._producer is not None:
            with contextlib.suppress(Exception):  # teardown is best effort: the broker may be gone already
                self._producer.close()
        if self._engine is not None:
            self._engine.dispose()

    def output(self) -> str:
        return "\n".join(p.output() for p in self.processes)

    # -- broker ---------------------------------------------------------------------------------

    def producer(self):  # type: ignore[no-untyped-def]
        """A Celery app configured like Librarian's, publishing to this stack's broker."""
        if self._producer is None:
            from celery import Celery

            from app.worker.celery_app import celery_app

            producer = Celery(f"rel-producer-{self.name}", set_as_current=False)
            producer.conf.update(celery_app.conf.table(with_defaults=False))
            producer.conf.update(broker_url=self.redis_url, result_backend=self.redis_url)
            self._producer = producer
        return self._producer

    def redis(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=2)

    def result_meta(self, task_ids: Iterable[str]) -> dict[str, dict | None]:
        """{task id: stored result meta or None}, read straight from the result backend in bulk."""
        ids = list(task_ids)
        metas: dict[str, dict | None] = {}
        client = self.redis()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for task_id, raw in zip(chunk, client.mget([f"celery-task-meta-{i}" for i in chunk]), strict=True):
                metas[task_id] = json.loads(raw) if raw else None
        return metas

    def states(self, task_ids: Iterable[str]) -> dict[str, str]:
        return {i: (m or {}).get("status", "PENDING") for i, m in self.result_meta(task_ids).items()}

    def wait_states(self, task_ids: Iterable[str], wanted: set[str], timeout: float) -> dict[str, str]:
        ids = list(task_ids)
        deadline = time.monotonic() + timeout
        while True:
            states = self.states(ids)
            if all(s in wanted for s in states.values()):
                return states
            if time.monotonic() > deadline:
                missing = {i: s for i, s in states.items() if s not in wanted}
                raise TimeoutError(
                    f"{len(missing)} of {len(ids)} tasks not in {wanted}: {dict(list(missing.items())[:5])}"
                )
            time.sleep(0.25)

    def locate(self, task_ids: Iterable[str]) -> dict[str, Any]:
        """Where unfinished tasks' messages are: a queue, the unacked hash, nowhere (lost)."""
        client = self.redis()
        wanted = set(task_ids)
        where: dict[str, Any] = dict.fromkeys(wanted, "nowhere")
        for queue in ("default", "validation", "pipeline", "maintenance"):
            for raw in client.lrange(queue, 0, -1):
                for task_id in wanted:
                    if task_id.encode() in raw:
                        where[task_id] = f"queue {queue}"
        for tag, raw in client.hgetall("unacked").items():
            for task_id in wanted:
                if task_id.encode() in raw:
                    score = client.zscore("unacked_index", tag)
                    age = round(time.time() - score, 1) if score else None
                    where[task_id] = f"unacked (age {age}s)"
        journaled = {
            task_id for task_id in wanted for raw in client.hvals("librarian:journal") if task_id.encode() in raw
        }
        for task_id in wanted:
            if where[task_id] == "nowhere" and task_id in journaled:
                where[task_id] = "nowhere but the journal (recoverable)"
        return {
            "where": where,
            "unacked_mutex_ttl": client.ttl("unacked_mutex"),
            "unacked": client.hlen("unacked"),
            "journal": client.hlen("librarian:journal"),
        }

    # -- database -------------------------------------------------------------------------------

    def engine(self) -> Engine:
        if self._engine is None:
            sqlite = self.database_url.startswith("sqlite")
            self._engine = create_engine(self.database_url, connect_args={"timeout": 30} if sqlite else {})
        return self._engine

    def sql(self, query: str, **params: Any) -> list[tuple]:
        """The rows of `query` (`:name` parameters), committed; [] before the stack made its tables."""
        if self.database_url.startswith("sqlite") and not self.db_path.exists():
            return []
        try:
            with self.engine().begin() as conn:
                result = conn.execute(text(query), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        except (OperationalError, ProgrammingError) as exc:
            if "no such table" in str(exc) or "UndefinedTable" in str(exc):
                return []
            raise

    def count(self, table: str) -> int:
        rows = self.sql(f"SELECT COUNT(*) FROM {table}")
        return rows[0][0] if rows else 0

    def writes(self, key: str) -> int:
        rows = self.sql("SELECT writes FROM diagnostic_record WHERE key = :key", key=key)
        return rows[0][0] if rows else 0

    def record(self, key: str) -> tuple | None:
        rows = self.sql("SELECT key, value, task_id, writes FROM diagnostic_record WHERE key = :key", key=key)
        return rows[0] if rows else None


__all__ = [
    "FAST_REDELIVERY",
    "SOAK",
    "Stack",
    "kill_group_hard",
    "own_valkey",
    "pool_children",
    "process_state",
    "redis_db_url",
    "report",
    "valkey_url",
    "vm_hwm_kb",
    "wait_until",
]
