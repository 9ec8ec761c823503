"""Diagnostic tasks: prove the worker, broker, database and storage work end to end."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from datetime import UTC, datetime

from billiard.process import current_process
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from sqlmodel import select

from app import crud
from app.core.db import session_scope
from app.models import DiagnosticRecord
from app.storage import get_store
from app.worker.base import LibrarianTask
from app.worker.celery_app import celery_app


class TransientError(Exception):
    """A failure worth retrying (a dependency hiccup)."""


@celery_app.task(bind=True, name="librarian.maintenance.health_check", max_retries=0)
def health_check(self: Task) -> dict:
    return {
        "status": "ok",
        "worker": self.request.hostname,
        "task_id": self.request.id,
        "timestamp": datetime.now(UTC).isoformat(),
    }


@celery_app.task(bind=True, name="librarian.demo.process")
def demo_process(self: LibrarianTask, message: str, steps: int = 5, step_seconds: float = 0.2) -> dict:
    """The seed's demo job: walks `steps` steps, reporting PROGRESS with percent and message."""
    for step in range(1, steps + 1):
        time.sleep(step_seconds)
        self.report_progress(int(step * 100 / steps), message=f"step {step}/{steps}: {message}")
    return {"message": message, "steps": steps, "processed_at": datetime.now(UTC).isoformat()}


@celery_app.task(
    bind=True,
    name="librarian.demo.always_transient",
    autoretry_for=(TransientError,),
    max_retries=3,
    default_retry_delay=1,
)
def always_transient(self: Task, reason: str = "simulated dependency outage") -> None:
    """Fails with a transient error every time: exercises retries and the final FAILURE state."""
    raise TransientError(f"{reason} (attempt {self.request.retries + 1})")


@celery_app.task(bind=True, name="librarian.demo.db_roundtrip")
def db_roundtrip(self: Task, key: str, value: str) -> dict:
    """Upserts one row by key and reads it back (idempotent: re-running never duplicates)."""
    with session_scope() as session:
        crud.record_write(session, key=key, value=value, task_id=self.request.id)
        stored = session.exec(select(DiagnosticRecord).where(DiagnosticRecord.key == key)).one()
        return {"key": stored.key, "value": stored.value, "writes": stored.writes}


@celery_app.task(name="librarian.demo.read_storage")
def read_storage(relative_path: str) -> dict:
    """Reads a stored file (never outside the store) and returns its size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with get_store().materialise(relative_path) as path, path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"path": relative_path, "size": size, "sha256": digest.hexdigest()}


# --- Fault-injection probes (tests/reliability): each records how often it ran, by key. ---


def _bump(key: str, task_id: str | None, value: str = "") -> int:
    """Upsert the row `key`, adding one to its `writes`; returns the new count."""
    with session_scope() as session:
        return crud.record_write(session, key=key, value=value, task_id=task_id)


@celery_app.task(bind=True, name="librarian.demo.sleep", default_retry_delay=1)
def sleep_task(self: Task, seconds: float, key: str | None = None) -> dict:
    """Sleeps `seconds`. With a key, counts its starts in row `{key}:start` and its ends in `{key}`."""
    if key:
        _bump(f"{key}:start", self.request.id, value=str(os.getpid()))
    time.sleep(seconds)
    if key:
        _bump(key, self.request.id, value="done")
    return {"slept": seconds, "key": key, "pid": os.getpid()}


@celery_app.task(bind=True, name="librarian.demo.ignore_soft_limit")
def ignore_soft_limit(self: Task, seconds: float, key: str | None = None) -> dict:
    """Swallows the soft time limit and keeps sleeping: only the hard limit can stop it."""
    if key:
        _bump(f"{key}:start", self.request.id)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
        except SoftTimeLimitExceeded:
            if key:
                _bump(f"{key}:soft", self.request.id)
    if key:
        _bump(key, self.request.id, value="done")
    return {"slept": seconds, "key": key}


@celery_app.task(bind=True, name="librarian.demo.crash_pool_child", default_retry_delay=1)
def crash_pool_child(self: Task, key: str) -> None:
    """SIGKILLs its own pool process (as a segfault or the OOM killer would), counting starts in `{key}:start`.

    Refuses to run outside a prefork pool child, where it would kill the worker itself.
    """
    if not current_process().name.startswith("ForkPoolWorker"):
        raise RuntimeError("crash_pool_child only runs in a prefork pool child")
    _bump(f"{key}:start", self.request.id)
    os.kill(os.getpid(), signal.SIGKILL)
