"""Scenario 5: soft and hard time limits on a dedicated worker (soft 2 s, hard 4 s).

* past the soft limit: the task ends FAILURE with SoftTimeLimitExceeded;
* past the hard limit (a task that swallows the soft limit): the pool child is killed and replaced,
  the worker stays up, the task ends FAILURE with TimeLimitExceeded and is not run again;
* a part whose validation outlasts the soft limit (1 s on its own worker; a generated model with
  12,000 objects takes ~2 s to validate) ends `failed` with the reason.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.reliability.helpers import Stack, pool_children, redis_db_url, report, wait_until

pytestmark = pytest.mark.integration

LIMITS = {"TASK_SOFT_TIME_LIMIT": "2", "TASK_TIME_LIMIT": "4"}


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("time-limits", redis_db_url(broker, 9), **LIMITS) as stack:
        yield stack


def test_soft_limit_ends_failure_with_the_reason(stack):
    stack.start_worker("tl")
    key = f"soft-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    result = stack.producer().send_task("librarian.demo.sleep", kwargs={"seconds": 30, "key": key})
    state = wait_until(lambda: (s := result.state) in {"SUCCESS", "FAILURE"} and s, timeout=30)
    ended = time.monotonic() - started
    error = result.result
    report(
        "soft time limit",
        state=state,
        error_type=type(error).__name__,
        error=str(error),
        ended_after_s=round(ended, 1),
        completed=stack.writes(key),
    )
    assert state == "FAILURE" and type(error).__name__ == "SoftTimeLimitExceeded"
    assert stack.writes(key) == 0 and ended < 15


def test_hard_limit_replaces_the_child_and_fails_the_task_once(stack):
    stack.stop_workers()
    worker = stack.start_worker("tlh", extra=("--concurrency", "1"))
    children_before = pool_children(worker.pid)
    key = f"hard-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    result = stack.producer().send_task("librarian.demo.ignore_soft_limit", kwargs={"seconds": 30, "key": key})
    state = wait_until(lambda: (s := result.state) in {"SUCCESS", "FAILURE"} and s, timeout=30)
    ended = time.monotonic() - started
    wait_until(
        lambda: pool_children(worker.pid) and pool_children(worker.pid) != children_before,
        timeout=15,
        message="the killed pool child was not replaced",
    )
    after = stack.producer().send_task("librarian.maintenance.health_check").get(timeout=30)
    time.sleep(3)  # a redelivery of the timed-out task would show as a second start
    report(
        "hard time limit",
        state=state,
        error=repr(result.result),
        ended_after_s=round(ended, 1),
        starts=stack.writes(f"{key}:start"),
        soft_limit_swallowed=stack.writes(f"{key}:soft"),
        completed=stack.writes(key),
        children_before=children_before,
        children_after=pool_children(worker.pid),
        worker_alive=worker.alive(),
        next_task=after["status"],
    )
    assert state == "FAILURE" and type(result.result).__name__ == "TimeLimitExceeded"
    assert stack.writes(f"{key}:soft") >= 1 and stack.writes(key) == 0
    assert stack.writes(f"{key}:start") == 1, "the timed-out task ran again"
    assert worker.alive() and after["status"] == "ok"


def test_a_part_whose_validation_outlasts_the_soft_limit_ends_failed_with_the_reason(stack):
    from tests.fixtures.models_3dm import large_model

    stack.stop_workers()
    # 30,000 objects validate in ~2.2 s on an idle 2-core machine: well past the 1 s soft limit
    # (12,000 took ~0.8 s there, so the test depended on the machine being busy).
    model = large_model(stack.root, 30000)
    _, base = stack.start_api("api")
    stack.start_worker("tlp", env={"TASK_SOFT_TIME_LIMIT": "1", "TASK_TIME_LIMIT": "30"})
    with open(model, "rb") as handle:
        answer = httpx.post(f"{base}/api/v1/parts", files={"file": ("slow.3dm", handle)}, timeout=60)
    assert answer.status_code == 202, answer.text
    part_id = answer.json()["part_id"]
    started = time.monotonic()
    part = wait_until(
        lambda: (
            (p := httpx.get(f"{base}/api/v1/parts/{part_id}").json())["status"] in {"validated", "rejected", "failed"}
            and p
        ),
        timeout=60,
    )
    report(
        "part past soft limit",
        status=part["status"],
        error=part["error"],
        ended_after_s=round(time.monotonic() - started, 1),
        model_bytes=model.stat().st_size,
    )
    assert part["status"] == "failed"
    assert "soft time limit" in (part["error"] or "")
