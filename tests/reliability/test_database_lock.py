"""Scenario 4: the database locked for longer than the app's lock wait (5 s, LOCK_WAIT_S) while tasks write.

The test holds the lock for 10 s: `BEGIN EXCLUSIVE` on the stack's SQLite file, or on PostgreSQL
`LOCK TABLE part, diagnostic_record IN ACCESS EXCLUSIVE MODE` (statements fail after the engine's
lock_timeout, as SQLite's fail after busy_timeout). Uploaded parts are queued
before the lock and the worker starts under it: `librarian.validation.validate_file` retries on
OperationalError, TASK_RETRY_DELAY apart (2 s here, 60 s by default), and must validate every part
once the lock is gone (no part left `processing`). `librarian.demo.db_roundtrip` has no retry: its
tasks are expected to end FAILURE (visible, not silently lost). An upload made while the database
is locked must answer 503 JSON, must not stall the rest of the API, and must leave no orphan file in
storage.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import text

from tests.reliability.helpers import Stack, redis_db_url, report, wait_until

pytestmark = pytest.mark.integration

PARTS = 4
LOCK_SECONDS = 10.0
RETRY_DELAY = 2
FINISHED = {"validated", "rejected", "failed"}


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("db-lock", redis_db_url(broker, 8), TASK_RETRY_DELAY=str(RETRY_DELAY)) as stack:
        yield stack


def upload(base: str, path, name: str = "part.3dm") -> httpx.Response:  # type: ignore[no-untyped-def]
    with open(path, "rb") as handle:
        return httpx.post(
            f"{base}/api/v1/parts", files={"file": (name, handle, "application/octet-stream")}, timeout=60
        )


@contextmanager
def database_locked(stack: Stack) -> Iterator[None]:
    """Every write (and on PostgreSQL every read) of parts and diagnostic records waits, then fails."""
    if stack.database_url.startswith("sqlite"):
        lock = sqlite3.connect(stack.db_path, timeout=1, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    with stack.engine().connect() as connection:
        connection.execute(text("LOCK TABLE part, diagnostic_record IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()


def test_tasks_retry_through_a_database_lock_and_nothing_is_lost(stack, models):
    _, base = stack.start_api("api")
    part_ids = []
    for n in range(PARTS):
        answer = upload(base, models["valid_part"], f"locked-{n}.3dm")
        assert answer.status_code == 202, answer.text
        part_ids.append(answer.json()["part_id"])
    probes = [
        stack.producer().send_task("librarian.demo.db_roundtrip", kwargs={"key": f"lock{n}", "value": "x"})
        for n in range(2)
    ]

    with database_locked(stack):
        locked_at = time.monotonic()
        worker = stack.start_worker("dbl")
        mark = len(worker.output())
        worker.wait_for(r'"event": "task retried"', timeout=30, after=mark)  # a write hit the lock

        # An upload under the lock, and meanwhile the API's health: the rest of the API must answer.
        upload_answer: dict = {}
        files_before = {p for p in stack.storage_dir.rglob("*") if p.is_file()}
        thread = threading.Thread(
            target=lambda: upload_answer.update(r=upload(base, models["valid_part"], "during.3dm"))
        )
        thread.start()
        time.sleep(0.3)
        health_latency = []
        for _ in range(3):
            t0 = time.monotonic()
            httpx.get(f"{base}/health-check/redis", timeout=30)
            health_latency.append(round(time.monotonic() - t0, 2))
        thread.join(timeout=60)
        time.sleep(max(0.0, locked_at + LOCK_SECONDS - time.monotonic()))
    released_at = time.monotonic()

    def statuses() -> dict[str, str]:
        return {p: httpx.get(f"{base}/api/v1/parts/{p}", timeout=10).json()["status"] for p in part_ids}

    final = wait_until(
        lambda: (s := statuses()) and all(v in FINISHED for v in s.values()) and s,
        timeout=90,
        message=f"parts not finished after the lock: {statuses()}",
    )
    finished_after = time.monotonic() - released_at
    attempts = [httpx.get(f"{base}/api/v1/parts/{p}").json()["attempts"] for p in part_ids]
    probe_states = [r.state for r in probes]
    retried = [r for r in worker.json_lines() if r.get("event") == "task retried"]
    retries = len(retried)
    during = upload_answer["r"]
    stray = {p for p in stack.storage_dir.rglob("*") if p.is_file()} - files_before
    known = {row[0] for row in stack.sql("SELECT storage_key FROM part")}
    orphans = [
        str(p.relative_to(stack.storage_dir)) for p in stray if str(p.relative_to(stack.storage_dir)) not in known
    ]
    report(
        "database locked",
        lock_s=LOCK_SECONDS,
        parts=PARTS,
        part_statuses=sorted(final.values()),
        part_attempts=attempts,
        task_retries_logged=retries,
        finished_after_unlock_s=round(finished_after, 1),
        db_roundtrip_states=probe_states,
        upload_during_lock=during.status_code,
        upload_during_lock_body=during.json(),
        api_health_latency_during_upload_s=health_latency,
        orphan_files=orphans,
        processing_left=sum(1 for v in final.values() if v == "processing"),
    )
    assert all(v == "validated" for v in final.values()), final
    assert retries >= 1
    validation_retries = [r for r in retried if r["task_name"] == "librarian.validation.validate_file"]
    assert validation_retries and all(
        r["reason"].startswith(f"Retry in {RETRY_DELAY}s: OperationalError") for r in validation_retries
    ), validation_retries
    assert max(r["retries"] for r in validation_retries) < 3  # recovered within its 3 retries
    assert during.status_code == 503 and during.json()["dependency"] == "database"
    assert not orphans, f"files left in storage by refused uploads: {orphans}"
    assert max(health_latency) < 1.0, (
        f"/health-check/redis took {max(health_latency)}s while an upload waited on the database lock: "
        "the async upload handler blocks the event loop"
    )
