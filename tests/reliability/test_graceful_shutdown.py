"""Scenario 8: SIGTERM a worker while tasks run: warm shutdown lets them finish; nothing is lost."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.reliability.helpers import Stack, redis_db_url, report, wait_until

pytestmark = pytest.mark.integration

TASKS = 4
TASK_SECONDS = 3


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("graceful", redis_db_url(broker, 12)) as stack:
        yield stack


def test_sigterm_lets_running_tasks_finish_and_loses_nothing(stack):
    worker = stack.start_worker("gs")
    producer = stack.producer()
    keys = [f"gs{n}-{uuid.uuid4().hex[:6]}" for n in range(TASKS)]
    results = [producer.send_task("librarian.demo.sleep", kwargs={"seconds": TASK_SECONDS, "key": k}) for k in keys]
    wait_until(lambda: sum(1 for k in keys if stack.writes(f"{k}:start")) >= 2, timeout=30)
    in_flight = [k for k in keys if stack.writes(f"{k}:start")]
    worker.signal(signal.SIGTERM)
    term_at = time.monotonic()
    worker.process.wait(timeout=60)
    exit_s = time.monotonic() - term_at
    finished_before_exit = [k for k in in_flight if stack.writes(k)]
    started_total = sum(1 for k in keys if stack.writes(f"{k}:start"))

    second = stack.start_worker("gs2")
    states = [r.get(timeout=60, propagate=False) and r.state for r in results]
    starts = [stack.writes(f"{k}:start") for k in keys]
    ends = [stack.writes(k) for k in keys]
    report(
        "SIGTERM warm shutdown",
        tasks=TASKS,
        in_flight_at_sigterm=len(in_flight),
        finished_before_exit=len(finished_before_exit),
        exit_code=worker.process.returncode,
        exit_after_s=round(exit_s, 1),
        started_before_exit=started_total,
        states=states,
        starts=starts,
        completions=ends,
        warm_shutdown_logged="warm shutdown" in worker.output().lower(),
    )
    assert finished_before_exit == in_flight, "a running task was cut short by SIGTERM"
    assert worker.process.returncode == 0
    assert states == ["SUCCESS"] * TASKS
    assert starts == [1] * TASKS and ends == [1] * TASKS, "a task was lost or ran twice"
    second.stop()
