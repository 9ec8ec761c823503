"""The T-022 contract against a real prefork worker and a real broker."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration


def test_broker_answers_ping(broker):
    assert broker.client().ping() is True


def test_worker_starts_without_errors_and_logs_ready(worker):
    lines = worker.json_lines()
    events = [line.get("event") for line in lines]
    assert "worker ready" in events, worker.tail()
    ready = lines[events.index("worker ready")]
    assert ready["hostname"].startswith(worker.name)
    assert "***" in ready["broker"] or "@" not in ready["broker"]
    start_up = lines[: events.index("worker ready") + 1]
    assert not [line for line in start_up if line.get("level") in {"error", "critical"}], worker.tail()


def test_health_check_reaches_success_with_expected_keys(worker, celery):
    result = celery.send_task("librarian.maintenance.health_check")
    payload = result.get(timeout=10)
    assert result.state == "SUCCESS"
    assert set(payload) == {"status", "worker", "task_id", "timestamp"}
    assert payload["status"] == "ok"
    assert payload["task_id"] == result.id
    assert payload["worker"].startswith(worker.name)


def test_send_task_round_trips_within_ten_seconds(worker, celery):
    started = time.monotonic()
    payload = celery.send_task("librarian.maintenance.health_check").get(timeout=10)
    assert payload["status"] == "ok"
    assert time.monotonic() - started < 10


def test_transient_error_is_retried_max_retries_times_then_fails(worker, celery, broker):
    """T-022 test 5: PENDING → STARTED → RETRY (3 times) → FAILURE, each retry starting again after the
    task's retry delay (always_transient: max_retries=3, default_retry_delay=1 s).

    Every state the worker stores is also published on the result key's channel (Celery's Redis
    backend), so the sequence is observed whole, even the STARTED states that last milliseconds."""
    import json
    import uuid

    task_id = str(uuid.uuid4())
    pubsub = broker.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"celery-task-meta-{task_id}")
    try:
        sent_at = time.monotonic()
        result = celery.send_task(
            "librarian.demo.always_transient", kwargs={"reason": "broker hiccup"}, task_id=task_id, countdown=1
        )
        pending = []  # while it waits out its countdown
        for _ in range(3):
            pending.append(result.state)
            time.sleep(0.1)
        events: list[tuple[str, int, float]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not events or events[-1][0] != "FAILURE"):
            message = pubsub.get_message(timeout=0.5)
            if message is not None:
                meta = json.loads(message["data"])
                events.append((meta["status"], meta["retries"], time.monotonic() - sent_at))
    finally:
        pubsub.close()

    assert pending == ["PENDING"] * 3
    states = [state for state, _, _ in events]
    assert states == ["STARTED", "RETRY"] * 3 + ["STARTED", "FAILURE"], events
    assert [retries for _, retries, _ in events] == [0, 0, 1, 1, 2, 2, 3, 3], events
    assert events[0][2] >= 0.9, events  # the first run waited for its countdown
    starts = [at for state, _, at in events if state == "STARTED"]
    retries = [at for state, _, at in events if state == "RETRY"]
    delays = [start - retry for retry, start in zip(retries, starts[1:], strict=True)]
    assert all(0.9 <= delay < 5 for delay in delays), delays  # default_retry_delay=1 s
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "TransientError"
    assert "attempt 4" in str(result.result)  # 1 run + max_retries=3 retries


def test_task_writes_and_reads_a_database_row(worker, celery):
    from sqlmodel import Session, select

    from app.core.db import get_engine
    from app.models import DiagnosticRecord

    first = celery.send_task("librarian.demo.db_roundtrip", args=["probe-1", "hello"]).get(timeout=10)
    again = celery.send_task("librarian.demo.db_roundtrip", args=["probe-1", "hello again"]).get(timeout=10)
    assert first == {"key": "probe-1", "value": "hello", "writes": 1}
    assert again == {"key": "probe-1", "value": "hello again", "writes": 2}
    with Session(get_engine()) as session:
        rows = session.exec(select(DiagnosticRecord).where(DiagnosticRecord.key == "probe-1")).all()
    assert len(rows) == 1


def test_task_reads_a_file_from_the_storage_dir(worker, celery):
    import hashlib

    from app.core.config import settings

    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    (settings.storage_dir / "probe.bin").write_bytes(b"librarian" * 1000)
    result = celery.send_task("librarian.demo.read_storage", args=["probe.bin"]).get(timeout=10)
    assert result["size"] == 9000
    assert result["sha256"] == hashlib.sha256(b"librarian" * 1000).hexdigest()


def test_task_refuses_to_read_outside_the_storage_dir(worker, celery):
    result = celery.send_task("librarian.demo.read_storage", args=["../../etc/passwd"])
    with pytest.raises(Exception, match="outside the storage directory") as info:  # Celery rebuilds the class
        result.get(timeout=10)
    assert type(info.value).__name__ == "StoragePathError"
    assert result.state == "FAILURE"
