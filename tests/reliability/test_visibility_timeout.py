"""Scenario 7: the visibility timeout.

* The start-up check refuses a worker whose BROKER_VISIBILITY_TIMEOUT is not larger than the hard
  time limit plus MAX_TASK_COUNTDOWN: the process exits non-zero with the reason.
* With a small but valid setting (visibility 12 s > hard limit 10 s + countdown 1 s), long tasks
  (8 s, countdown 1 s) on two workers run exactly once, even though a third worker joins while they
  run (its start-up sweep of unacknowledged messages sees them and must leave them alone).
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.reliability.helpers import Stack, redis_db_url, report, wait_until

pytestmark = pytest.mark.integration

VALID = {
    "BROKER_VISIBILITY_TIMEOUT": "12",
    "TASK_TIME_LIMIT": "10",
    "TASK_SOFT_TIME_LIMIT": "9",
    "MAX_TASK_COUNTDOWN": "1",
}
TASKS = 4
TASK_SECONDS = 8


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("visibility", redis_db_url(broker, 11), **VALID) as stack:
        yield stack


def test_worker_with_a_visibility_timeout_below_the_hard_limit_refuses_to_start(stack):
    unsafe = {
        "BROKER_VISIBILITY_TIMEOUT": "10",
        "TASK_TIME_LIMIT": "10",
        "TASK_SOFT_TIME_LIMIT": "5",
        "MAX_TASK_COUNTDOWN": "0",
    }
    worker = stack.start_worker("unsafe", env=unsafe, wait=False)
    code = wait_until(
        lambda: worker.process.poll() is not None and (worker.process.returncode,),
        timeout=60,
        message="a worker with an unsafe visibility timeout kept running",
    )[0]
    text = worker.output()
    report(
        "unsafe visibility timeout",
        exit_code=code,
        reason_logged="BROKER_VISIBILITY_TIMEOUT=10s must be larger" in text,
        became_ready='"event": "worker ready"' in text,
    )
    assert code != 0
    assert "BROKER_VISIBILITY_TIMEOUT=10s must be larger than the longest hard time limit" in text
    assert '"event": "worker ready"' not in text


def test_long_tasks_under_a_valid_visibility_timeout_run_exactly_once(stack):
    stack.stop_workers()  # were the unsafe worker still up, it would take tasks (and kill them at 5 s)
    stack.start_worker("vis1")
    stack.start_worker("vis2")
    producer = stack.producer()
    keys = [f"vis-{uuid.uuid4().hex[:8]}" for _ in range(TASKS)]
    results = [
        producer.send_task("librarian.demo.sleep", kwargs={"seconds": TASK_SECONDS, "key": k}, countdown=1)
        for k in keys
    ]
    wait_until(lambda: all(stack.writes(f"{k}:start") for k in keys), timeout=30, message="tasks did not start")
    late = stack.start_worker("vis3")  # joins mid-run: sweeps unacked messages at connection start
    joined_while_running = not all(stack.writes(k) for k in keys)
    states = [r.get(timeout=60, propagate=False) and r.state for r in results]
    wait_until(late.alive, timeout=1)
    time.sleep(2)
    starts = [stack.writes(f"{k}:start") for k in keys]
    ends = [stack.writes(k) for k in keys]
    errors = [repr(r.result) for r in results if r.state != "SUCCESS"]
    report(
        "long tasks, valid visibility timeout",
        tasks=TASKS,
        task_s=TASK_SECONDS,
        states=states,
        errors=errors,
        starts=starts,
        completions=ends,
        third_worker_joined_mid_run=joined_while_running,
    )
    assert states == ["SUCCESS"] * TASKS
    assert starts == [1] * TASKS and ends == [1] * TASKS
