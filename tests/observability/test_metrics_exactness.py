"""Every counter of a known workload is exact under the real prefork pool (concurrency 2)."""

from __future__ import annotations

import time
import uuid

import pytest
from celery import Celery

from tests.conftest import stack_env, start_worker
from tests.utils.metrics import scrape, value
from tests.utils.processes import wait_until

pytestmark = pytest.mark.integration

N_HEALTH, N_DEMO, M_FAIL, K_RETRYING, R_REVOKED = 6, 4, 2, 1, 3
MAX_RETRIES = 3  # of librarian.demo.always_transient


@pytest.fixture(scope="module")
def isolated(broker):
    """A worker and a producer on their own Redis database, so no other test's tasks count."""
    url = broker.db_url(2)
    from app.worker.celery_app import celery_app

    producer = Celery("exactness", set_as_current=False)
    producer.conf.update(celery_app.conf.table(with_defaults=False))
    producer.conf.update(broker_url=url, result_backend=url)
    worker = start_worker("exact", env=stack_env(REDIS_URL=url), extra=("--queues", "default,maintenance"))
    try:
        yield producer, worker, url
    finally:
        worker.stop()


def test_counters_and_histograms_match_the_workload(isolated):
    producer, worker, _ = isolated
    # Revoke first, then publish: the worker drops them on receipt (task_revoked fires, never runs).
    revoked_ids = [str(uuid.uuid4()) for _ in range(R_REVOKED)]
    for task_id in revoked_ids:
        producer.control.revoke(task_id)
    time.sleep(0.5)
    results = [producer.send_task("librarian.maintenance.health_check") for _ in range(N_HEALTH)]
    results += [
        producer.send_task("librarian.demo.process", args=["x"], kwargs={"steps": 1, "step_seconds": 0})
        for _ in range(N_DEMO)
    ]
    failing = [producer.send_task("librarian.demo.read_storage", args=["../escape"]) for _ in range(M_FAIL)]
    retrying = [producer.send_task("librarian.demo.always_transient") for _ in range(K_RETRYING)]
    for task_id in revoked_ids:
        producer.send_task("librarian.demo.db_roundtrip", args=["never", "runs"], task_id=task_id)

    for result in results:
        result.get(timeout=30)
    for result in failing + retrying:
        wait_until(lambda r=result: r.state == "FAILURE", timeout=30, message=f"{result.id} never failed")

    def settled():
        s = scrape(worker.metrics_url)
        revoked, active = value(s, "librarian_tasks_revoked_total"), value(s, "librarian_tasks_active")
        return s if revoked == R_REVOKED and active == 0 else None

    # Stock exposition (test_metrics_stock.py) takes ~0.6 s of CPU per scrape: room for a loaded machine.
    s = wait_until(settled, timeout=40, message="revocations or active tasks never settled")
    attempts = K_RETRYING * (MAX_RETRIES + 1)
    health = {"task": "librarian.maintenance.health_check", "queue": "maintenance"}
    demo = {"task": "librarian.demo.process", "queue": "default"}
    storage = {"task": "librarian.demo.read_storage", "queue": "default"}
    transient = {"task": "librarian.demo.always_transient", "queue": "default"}

    assert value(s, "librarian_tasks_received_total", **health) == N_HEALTH
    assert value(s, "librarian_tasks_started_total", **health) == N_HEALTH
    assert value(s, "librarian_tasks_succeeded_total", **health) == N_HEALTH
    assert value(s, "librarian_tasks_succeeded_total", **demo) == N_DEMO
    assert value(s, "librarian_tasks_failed_total", **storage) == M_FAIL
    assert value(s, "librarian_task_exceptions_total", **storage, exception="StoragePathError") == M_FAIL
    assert value(s, "librarian_tasks_received_total", **transient) == attempts
    assert value(s, "librarian_tasks_started_total", **transient) == attempts
    assert value(s, "librarian_tasks_retried_total", **transient) == K_RETRYING * MAX_RETRIES
    assert value(s, "librarian_tasks_failed_total", **transient) == K_RETRYING
    assert value(s, "librarian_task_exceptions_total", **transient, exception="TransientError") == K_RETRYING
    assert value(s, "librarian_tasks_revoked_total", task="librarian.demo.db_roundtrip") == R_REVOKED
    assert value(s, "librarian_tasks_started_total", task="librarian.demo.db_roundtrip") == 0
    # Totals across everything the worker did.
    started = N_HEALTH + N_DEMO + M_FAIL + attempts
    assert value(s, "librarian_tasks_started_total") == started
    assert value(s, "librarian_tasks_succeeded_total") == N_HEALTH + N_DEMO
    assert value(s, "librarian_tasks_failed_total") == M_FAIL + K_RETRYING
    # Histograms: one runtime observation per attempt, labelled by outcome; one wait per start.
    assert value(s, "librarian_task_runtime_seconds_count", outcome="success") == N_HEALTH + N_DEMO
    assert value(s, "librarian_task_runtime_seconds_count", outcome="failure") == M_FAIL + K_RETRYING
    assert value(s, "librarian_task_runtime_seconds_count", outcome="retry") == K_RETRYING * MAX_RETRIES
    assert value(s, "librarian_task_queue_wait_seconds_count") == started
    assert value(s, "librarian_task_queue_wait_seconds_sum") > 0


def test_counters_of_known_tasks_exist_at_zero_before_any_event(isolated):
    _, worker, _ = isolated
    s = scrape(worker.metrics_url)
    never_succeeded = (
        "librarian_tasks_succeeded_total",
        (("queue", "default"), ("task", "librarian.demo.db_roundtrip")),
    )
    assert s[never_succeeded] == 0  # the series exists although that task only ever got revoked
    assert s[("librarian_tasks_failed_total", (("queue", "default"), ("task", "librarian.demo.db_roundtrip")))] == 0
    names = {dict(labels).get("task") for (name, labels) in s if name == "librarian_tasks_failed_total"} | {
        dict(labels).get("task") for (name, labels) in s if name == "librarian_tasks_revoked_total"
    }
    assert "librarian.demo.read_storage" in names
    assert value(s, "librarian_tasks_rejected_total", reason="decode_error") == 0
    assert ("librarian_tasks_rejected_total", (("reason", "decode_error"),)) in s


def test_queue_depth_counts_priority_sub_queues(isolated):
    producer, worker, url = isolated
    import redis

    client = redis.Redis.from_url(url)
    # The isolated worker does not consume 'validation': messages wait there.
    for priority in (0, 0, 5, 9, 9, 9):
        producer.send_task("librarian.validation.noop", queue="validation", priority=priority)
    keys = list(client.keys("validation*"))
    assert len(keys) > 1, keys  # the priorities really landed in sub-queues
    expected = sum(client.llen(k) for k in keys)
    assert expected == 6
    s = scrape(worker.metrics_url)
    assert value(s, "librarian_queue_depth", queue="validation") == expected
    for key in keys:
        client.delete(key)
    assert value(scrape(worker.metrics_url), "librarian_queue_depth", queue="validation") == 0


def test_queue_wait_of_a_countdown_task_counts_from_its_due_time(isolated):
    producer, worker, _ = isolated
    labels = {"task": "librarian.maintenance.health_check", "queue": "maintenance"}
    before = scrape(worker.metrics_url)
    producer.send_task("librarian.maintenance.health_check", countdown=3).get(timeout=30)
    after = wait_until(
        lambda: (
            (s := scrape(worker.metrics_url))
            and value(s, "librarian_task_queue_wait_seconds_count", **labels)
            > value(before, "librarian_task_queue_wait_seconds_count", **labels)
            and s
        ),
        timeout=10,
    )
    waited = value(after, "librarian_task_queue_wait_seconds_sum", **labels) - value(
        before, "librarian_task_queue_wait_seconds_sum", **labels
    )
    assert 0 <= waited < 1.5, f"the 3 s countdown was counted as waiting ({waited:.2f}s)"
