"""Sentry with the real SDK against a local envelope sink: task errors, API errors, one trace."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import stack_env, start_api, start_worker
from tests.utils.processes import wait_until
from tests.utils.sentry_sink import SentrySink

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sentry_stack(broker):
    sink = SentrySink()
    url = broker.db_url(4)
    env = stack_env(REDIS_URL=url, SENTRY_DSN=sink.dsn, SENTRY_TRACES_SAMPLE_RATE="1.0")
    api, base = start_api("api-sentry", env=env)
    worker = start_worker("sentry", env=env)
    try:
        yield sink, base, worker, api
    finally:
        worker.stop()
        api.stop()
        sink.close()


def wait_status(base: str, task_id: str, states: set[str]) -> str:
    return wait_until(
        lambda: (s := httpx.get(f"{base}/api/v1/tasks/{task_id}").json()["status"]) in states and s,
        timeout=30,
        message=f"{task_id} never reached {states}",
    )


def test_a_failing_task_sends_one_error_event_tagged_with_the_task(sentry_stack):
    sink, _, worker, _ = sentry_stack
    from celery import Celery

    from app.worker.celery_app import celery_app

    producer = Celery("sentry-producer", set_as_current=False)
    producer.conf.update(celery_app.conf.table(with_defaults=False))
    url = worker.env["REDIS_URL"]
    producer.conf.update(broker_url=url, result_backend=url)
    result = producer.send_task("librarian.demo.read_storage", args=["../outside"])
    wait_until(lambda: result.state == "FAILURE", timeout=20)

    def events_for_task():
        return [e for e in sink.of_type("event") if (e.get("tags") or {}).get("celery_task_id") == result.id]

    events = wait_until(events_for_task, timeout=10, message="no Sentry event for the failed task")
    time.sleep(1.0)
    events = events_for_task()
    assert len(events) == 1, [e.get("message") or e.get("exception") for e in events]
    event = events[0]
    assert event["exception"]["values"][-1]["type"] == "StoragePathError"
    assert event["transaction"] == "librarian.demo.read_storage"
    assert event["environment"] == "test"
    assert event["tags"]["component"] == "worker"


def test_an_api_error_sends_an_event_and_the_client_gets_no_trace(sentry_stack):
    sink, base, _, _ = sentry_stack
    answer = httpx.post(f"{base}/api/v1/diagnostics/sentry-error")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error"}
    events = wait_until(
        lambda: [
            e
            for e in sink.of_type("event")
            if any(v.get("type") == "SentryDiagnosticError" for v in (e.get("exception") or {}).get("values", []))
        ],
        timeout=10,
        message="no Sentry event for the API error",
    )
    assert events[0]["tags"]["component"] == "api"
    time.sleep(1.0)
    same = [
        e
        for e in sink.of_type("event")
        if any(v.get("type") == "SentryDiagnosticError" for v in (e.get("exception") or {}).get("values", []))
    ]
    assert len(same) == 1, "the API error was reported more than once"
    # The keep-alive connection survives a 500: the next request on the same client works.
    with httpx.Client(base_url=base) as client:
        assert client.post("/api/v1/diagnostics/sentry-error").status_code == 500
        assert client.get("/health").status_code == 200


def test_the_trace_of_the_http_request_continues_into_the_task(sentry_stack):
    sink, base, _, _ = sentry_stack
    task_id = httpx.post(f"{base}/api/v1/tasks/test", params={"message": "traced", "steps": 1}).json()["task_id"]
    assert wait_status(base, task_id, {"SUCCESS", "FAILURE"}) == "SUCCESS"

    def transactions():
        found = {t.get("transaction"): t for t in sink.of_type("transaction")}
        return found if "librarian.demo.process" in found and "/api/v1/tasks/test" in found else None

    found = wait_until(transactions, timeout=15, message="the API or worker transaction never arrived")
    api_trace = found["/api/v1/tasks/test"]["contexts"]["trace"]["trace_id"]
    task_trace = found["librarian.demo.process"]["contexts"]["trace"]["trace_id"]
    assert api_trace == task_trace


def test_no_secret_reaches_sentry(sentry_stack, broker):
    sink, *_ = sentry_stack
    import json

    everything = json.dumps(sink.items)
    if broker.password:
        assert broker.password not in everything
