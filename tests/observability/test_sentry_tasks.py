"""The worker's own Sentry receivers (app/observability/sentry_tasks.py), in process: the real SDK
with an in-memory transport, tasks run eagerly through Celery's tracer (the same signals a pool
child sends). tests/observability/test_sentry.py covers the same through real processes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import sentry_sdk
from celery import Celery
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from app.observability import sentry_tasks
from app.observability.sentry import tag_part
from app.observability.sentry_tasks import trace_is_sampled


class Expected(Exception):
    pass


class Captured(Transport):
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.items: list[tuple[str, dict]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            self.items.append((item.type, item.payload.json or {}))

    def of_type(self, kind: str) -> list[dict]:
        return [payload for type_, payload in self.items if type_ == kind]


def _init(rate: float | None) -> Captured:
    transport = Captured()
    sentry_sdk.init(
        dsn="http://key@127.0.0.1:9/1",
        transport=transport,
        traces_sample_rate=rate,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    return transport


PUBLISHED: list[dict] = []


@pytest.fixture(scope="module")
def app():
    app = Celery("sentry-tasks", set_as_current=False)
    app.conf.update(task_always_eager=False, broker_url="memory://", result_backend="cache+memory://")

    @app.task(name="t.ok", bind=True)
    def ok(self, part: str | None = None) -> str:
        if part:
            tag_part(part)
        return "done"

    @app.task(name="t.boom", bind=True)
    def boom(self) -> None:
        raise RuntimeError("boom")

    @app.task(name="t.expected", throws=(Expected,))
    def expected() -> None:
        raise Expected("declared")

    @app.task(name="t.parent")
    def parent() -> None:
        headers: dict = {}
        sentry_tasks._publish(headers=headers)  # what before_task_publish hands the receiver
        PUBLISHED.append(headers)

    sentry_tasks.connect()
    return app


@pytest.fixture(autouse=True)
def no_client_after():
    yield
    sentry_sdk.init(dsn=None)  # no client for the tests that follow


def run(app: Celery, name: str, headers: dict | None = None, **kwargs: Any) -> str:
    task_id = str(uuid.uuid4())
    app.tasks[name].apply(kwargs=kwargs, task_id=task_id, headers=headers or {})
    sentry_sdk.flush()
    return task_id


def test_the_sampling_decision_comes_from_the_incoming_header_else_from_the_rate():
    trace = uuid.uuid4().hex
    assert trace_is_sampled(f"{trace}-{'a' * 16}-1", tracing=False) is True
    assert trace_is_sampled(f"{trace}-{'a' * 16}-0", tracing=True) is False
    assert trace_is_sampled(f"{trace}-{'a' * 16}", tracing=True) is True  # deferred: the rate decides
    assert trace_is_sampled(None, tracing=False) is False
    assert trace_is_sampled(None, tracing=True) is True


def test_a_failure_is_one_unhandled_event_tagged_with_the_task(app):
    sent = _init(rate=0.0)
    task_id = run(app, "t.boom")
    events = sent.of_type("event")
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["celery_task_id"] == task_id
    assert event["transaction"] == "t.boom"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["mechanism"] == {"type": "celery", "handled": False}
    assert event["exception"]["values"][-1]["stacktrace"]["frames"], "the event has no stack"


def test_a_declared_outcome_sends_nothing(app):
    sent = _init(rate=0.0)
    run(app, "t.expected")
    assert sent.of_type("event") == []


def test_a_tag_set_by_a_task_ends_with_it(app):
    sent = _init(rate=0.0)
    run(app, "t.ok", part="part-1")
    run(app, "t.boom")
    (event,) = sent.of_type("event")
    assert "part_id" not in event["tags"], "the first task's tag leaked into the next task's event"


def test_an_unsampled_task_starts_no_transaction(app):
    sent = _init(rate=0.0)
    run(app, "t.ok", headers={"sentry-trace": f"{uuid.uuid4().hex}-{'b' * 16}-0"})
    run(app, "t.ok")
    assert sent.of_type("transaction") == []


def test_a_sampled_trace_continues_into_the_task(app):
    sent = _init(rate=0.0)  # the parent's decision wins over the rate, as in the SDK
    trace = uuid.uuid4().hex
    run(app, "t.ok", headers={"sentry-trace": f"{trace}-{'c' * 16}-1"})
    (transaction,) = sent.of_type("transaction")
    assert transaction["transaction"] == "t.ok"
    assert transaction["contexts"]["trace"]["trace_id"] == trace
    assert transaction["contexts"]["trace"]["parent_span_id"] == "c" * 16
    assert transaction["contexts"]["trace"]["op"] == "queue.task.celery"


def test_without_a_trace_the_rate_decides(app):
    sent = _init(rate=1.0)
    run(app, "t.ok")
    assert [t["transaction"] for t in sent.of_type("transaction")] == ["t.ok"]


def test_a_task_sent_by_beat_closes_its_cron_check_in(app):
    sent = _init(rate=0.0)
    monitor = {"sentry-monitor-slug": "canary", "sentry-monitor-check-in-id": uuid.uuid4().hex}
    run(app, "t.ok", headers={**monitor, "sentry-monitor-start-timestamp-s": f"{time.time():.9f}"})
    run(app, "t.boom", headers={**monitor, "sentry-monitor-start-timestamp-s": f"{time.time():.9f}"})
    check_ins = sent.of_type("check_in")
    assert [(c["monitor_slug"], c["status"]) for c in check_ins] == [("canary", "ok"), ("canary", "error")]
    assert all(c["check_in_id"] == monitor["sentry-monitor-check-in-id"] for c in check_ins)
    assert all(0 <= c["duration"] < 5 for c in check_ins)


def test_a_task_published_from_a_task_carries_the_trace_on(app):
    _init(rate=0.0)
    trace = uuid.uuid4().hex
    PUBLISHED.clear()
    for sampled in ("1", "0"):
        run(app, "t.parent", headers={"sentry-trace": f"{trace}-{'d' * 16}-{sampled}"})
    sampled_headers, unsampled_headers = PUBLISHED
    assert sampled_headers["sentry-trace"].startswith(f"{trace}-") and sampled_headers["sentry-trace"].endswith("-1")
    assert sampled_headers["sentry-trace"] != f"{trace}-{'d' * 16}-1", "the child's parent is the task's span"
    assert unsampled_headers["sentry-trace"] == f"{trace}-{'d' * 16}-0"


def test_a_publish_outside_any_task_adds_nothing(app):
    _init(rate=0.0)
    headers: dict = {}
    sentry_tasks._publish(headers=headers)  # as in the API or beat, where no task runs
    assert headers == {}
