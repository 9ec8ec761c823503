"""Scenario 6: hung and half-dead workers.

* SIGSTOP a worker: its heartbeat key expires and /health-check/celery reports it dead within 10 s;
  SIGCONT brings it back (reported alive again, serves a task).
* A task whose pool child dies every time (SIGKILL of its own process: a segfault, the OOM killer):
  with acks_late + reject_on_worker_lost Celery requeues it at once, forever, unless the app caps
  redeliveries (Celery 5.7: task_retry_on_worker_lost + max_retries). The test asks for a cap.
* A worker started before its broker keeps retrying and starts consuming once the broker is up.
"""

from __future__ import annotations

import secrets
import signal
import time
import uuid

import httpx
import pytest

from tests.reliability.helpers import (
    Stack,
    own_valkey,
    redis_db_url,
    report,
    valkey_url,
    wait_until,
)
from tests.utils.processes import free_port

pytestmark = pytest.mark.integration

MAX_DELIVERIES = 4  # the first run plus Celery's default max_retries (3)


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("hung", redis_db_url(broker, 10)) as stack:
        yield stack


def test_sigstopped_worker_is_reported_dead_within_10s_and_recovers_on_sigcont(stack):
    _, base = stack.start_api("api")
    worker = stack.start_worker("hung")
    wait_until(lambda: httpx.get(f"{base}/health-check/celery", timeout=5).status_code == 200, timeout=15)
    worker.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_until(
            lambda: httpx.get(f"{base}/health-check/celery", timeout=5).status_code == 503,
            timeout=15,
            interval=0.2,
            message="a SIGSTOPped worker still looks alive after 15 s",
        )
        detected = time.monotonic() - stopped_at
        body = httpx.get(f"{base}/health-check/celery", timeout=5).json()
        overall = httpx.get(f"{base}/health", timeout=5).json()
    finally:
        worker.signal(signal.SIGCONT)
    resumed_at = time.monotonic()
    wait_until(
        lambda: httpx.get(f"{base}/health-check/celery", timeout=5).status_code == 200,
        timeout=15,
        message="the resumed worker was not reported alive again",
    )
    back = time.monotonic() - resumed_at
    result = stack.producer().send_task("librarian.maintenance.health_check")
    answer = result.get(timeout=30)
    report(
        "worker SIGSTOP",
        detected_dead_s=round(detected, 1),
        health=overall["status"],
        alive_again_s=round(back, 1),
        task_after_resume=answer["status"],
    )
    assert detected < 10, f"dead worker detected after {detected:.1f}s"
    assert body["status"] == "unhealthy" and overall["status"] == "degraded"
    assert answer["status"] == "ok"


def test_a_task_that_kills_its_pool_child_is_not_redelivered_forever(stack):
    """A pool child that dies on every delivery (a segfault, the OOM killer) is a counted retry
    (`task_retry_on_worker_lost`, app/worker/routing.py), ending in FAILURE (WorkerLostError) after
    max_retries instead of Celery's default endless requeue (`reject_on_worker_lost`)."""
    stack.stop_workers()
    worker = stack.start_worker("crash")
    key = f"crash-{uuid.uuid4().hex[:8]}"
    result = stack.producer().send_task("librarian.demo.crash_pool_child", kwargs={"key": key})
    started = time.monotonic()
    # Stop watching at a final state, once the loop has gone past the cap, or after 30 s.
    while time.monotonic() - started < 30:
        state = result.state
        starts = stack.writes(f"{key}:start")
        if state in {"SUCCESS", "FAILURE"} or starts > MAX_DELIVERIES + 1:
            break
        time.sleep(0.2)
    time.sleep(2)  # a capped task makes no more deliveries after its final state
    state, starts = result.state, stack.writes(f"{key}:start")
    report(
        "pool child dies every delivery",
        deliveries=starts,
        state=state,
        watched_s=round(time.monotonic() - started, 1),
        worker_alive=worker.alive(),
        error=repr(result.result) if state == "FAILURE" else None,
    )
    assert worker.alive(), "the worker main process died with its pool child"
    assert starts <= MAX_DELIVERIES and state == "FAILURE", (
        f"{starts} deliveries in {time.monotonic() - started:.0f}s, state {state}: a task whose pool child dies "
        f"is requeued forever (reject_on_worker_lost without a cap)"
    )


def test_worker_started_before_the_broker_waits_and_then_consumes(stack):
    password = secrets.token_hex(12)
    port = free_port()
    url = valkey_url(password, port)
    late = Stack("hung-late-broker", url)
    server = None
    try:
        worker = late.start_worker("early", wait=False)
        time.sleep(4)  # the broker is not there yet: the worker must retry, not exit
        alive_without_broker = worker.alive()
        retry_lines = worker.output().count("Cannot connect") + worker.output().count("retry")
        server = own_valkey("hung-late-broker", password=password, port=port)
        up_at = time.monotonic()
        worker.wait_for(r'"event": "worker ready"', timeout=60)
        ready_after = time.monotonic() - up_at
        answer = late.producer().send_task("librarian.maintenance.health_check").get(timeout=30)
        report(
            "worker before broker",
            alive_without_broker=alive_without_broker,
            retry_log_lines=retry_lines,
            ready_after_broker_up_s=round(ready_after, 1),
            task=answer["status"],
        )
        assert alive_without_broker
        assert answer["status"] == "ok"
    finally:
        late.stop()
        if server is not None and server.is_running():
            server.stop()
