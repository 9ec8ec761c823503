"""The stuck-part sweep, called directly on the test database and run by a real worker; a failing
periodic task is counted in the worker's task-failure metrics."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from app.core.config import settings
from app.core.db import get_engine, init_db
from app.models import Part, PartStatus
from app.worker.tasks.maintenance import sweep_stuck_parts
from tests.utils.metrics import scrape, value

SWEEP = "librarian.maintenance.sweep_stuck_parts"
PAST_HARD_LIMIT = timedelta(seconds=settings.TASK_TIME_LIMIT + 121)  # the sweep's grace is 120 s


@pytest.fixture(autouse=True)
def tables() -> None:
    init_db()


def make_part(status: PartStatus, age: timedelta, task_id: str | None = None) -> uuid.UUID:
    with Session(get_engine()) as session:
        part = Part(
            filename="stuck.3dm",
            storage_key=f"stuck/{uuid.uuid4()}.3dm",
            status=status,
            task_id=task_id,
            updated_at=datetime.now(UTC) - age,
        )
        session.add(part)
        session.commit()
        return part.id


def read_part(part_id: uuid.UUID) -> Part:
    with Session(get_engine()) as session:
        part = session.get(Part, part_id)
        assert part is not None
        return part


def test_sweep_fails_a_part_processing_past_the_hard_limit(broker):
    stuck = make_part(PartStatus.PROCESSING, PAST_HARD_LIMIT)
    recent = make_part(PartStatus.PROCESSING, timedelta(minutes=1))
    queued = make_part(PartStatus.QUEUED, PAST_HARD_LIMIT)

    outcome = sweep_stuck_parts()

    assert outcome["swept"] >= 1
    part = read_part(stuck)
    assert part.status == PartStatus.FAILED
    assert f"hard time limit ({settings.TASK_TIME_LIMIT}s)" in part.error
    assert part.updated_at.tzinfo is not None
    assert read_part(recent).status == PartStatus.PROCESSING
    assert read_part(queued).status == PartStatus.QUEUED


def test_sweep_fails_the_part_of_a_revoked_task(broker, celery):
    task_id = str(uuid.uuid4())
    celery.backend.mark_as_revoked(task_id, reason="revoked outside the API")
    part_id = make_part(PartStatus.PROCESSING, timedelta(seconds=5), task_id=task_id)

    assert sweep_stuck_parts()["revoked"] >= 1

    part = read_part(part_id)
    assert part.status == PartStatus.FAILED
    assert part.error.startswith("revoked")


@pytest.mark.integration
def test_worker_runs_the_sweep_and_fails_the_stuck_part(worker, celery):
    stuck = make_part(PartStatus.PROCESSING, PAST_HARD_LIMIT)

    outcome = celery.send_task(SWEEP).get(timeout=20)

    assert outcome["swept"] >= 1
    part = read_part(stuck)
    assert part.status == PartStatus.FAILED
    assert "worker lost or killed" in part.error


@pytest.mark.integration
def test_a_failing_periodic_task_is_counted_by_the_worker(worker, celery):
    labels = {"task": SWEEP, "queue": "maintenance"}
    before = scrape(worker.metrics_url)
    assert ("librarian_tasks_failed_total", tuple(sorted(labels.items()))) in before  # exists at 0

    result = celery.send_task(SWEEP, kwargs={"grace_seconds": "not a number"})
    with pytest.raises(TypeError):
        result.get(timeout=20)

    # task_failure (the counter) fires after the result is stored: give it a moment.
    deadline = time.monotonic() + 5
    while True:
        after = scrape(worker.metrics_url)
        failed = value(after, "librarian_tasks_failed_total", **labels)
        if failed > value(before, "librarian_tasks_failed_total", **labels) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert failed == value(before, "librarian_tasks_failed_total", **labels) + 1
    exceptions = {**labels, "exception": "TypeError"}
    assert (
        value(after, "librarian_task_exceptions_total", **exceptions)
        == value(before, "librarian_task_exceptions_total", **exceptions) + 1
    )
