"""Celery signals → Prometheus. Works without Celery events (-E): every number comes from signals.

Where each signal fires under prefork: before_task_publish in the producer (API or a task),
task_received/task_revoked/task_rejected/task_unknown in the worker's main process, and
task_prerun/postrun/success/failure/retry in the pool child that runs the task.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from typing import Any

import structlog
from celery import signals
from kombu.exceptions import ContentDisallowed

from app.broker import keys
from app.observability import metrics as m

PUBLISHED_AT = keys.PUBLISHED_AT_HEADER
REQUEST_ID = keys.REQUEST_ID_HEADER

# task id → (perf_counter at prerun, seconds from due to start or None), in the pool child
_started: dict[str, tuple[float, float | None]] = {}


def started(task_id: str | None) -> tuple[float, float | None] | None:
    """When the running task started (perf_counter) and how long it had waited from its due time,
    for the outcome line, which is sent before postrun pops them."""
    return _started.get(task_id) if task_id else None


def request_header(request: Any, key: str) -> Any:
    """A custom message header: an attribute of a task's Context, a key of a worker Request's dict."""
    value = getattr(request, key, None)
    if value is None:
        source = getattr(request, "request_dict", None) or getattr(request, "headers", None) or {}
        value = source.get(key)
    return value


def _queue_of(request: Any) -> str:
    info = getattr(request, "delivery_info", None) or {}
    return m.queue_label(info.get("routing_key"))


def _labels(task: Any) -> tuple[str, str]:
    return task.name, _queue_of(task.request)


# Labelled children, looked up once per label set: prometheus_client's labels() validates, converts
# and takes a lock on every call, a few microseconds each, several times per task. Label values are
# bounded by design (task names, queues, outcomes, exception classes), and so is this cache. The
# children's multiprocess values re-open their files by themselves after fork().
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    child = _children.get((metric, labels))
    if child is None:
        child = _children[(metric, labels)] = metric.labels(*labels)
    return child


def _on_publish(
    sender: str | None = None, headers: dict | None = None, routing_key: str | None = None, **_: Any
) -> None:
    if headers is not None:
        headers.setdefault(PUBLISHED_AT, time.time())
        # asgi-correlation-id pulls in Starlette (~64 ms, -X importtime): a worker pays it only
        # when it publishes.
        from asgi_correlation_id import correlation_id  # noqa: PLC0415

        request_id = correlation_id.get() or structlog.contextvars.get_contextvars().get("request_id")
        if request_id and REQUEST_ID not in headers:
            headers[REQUEST_ID] = request_id
    _child(m.TASKS_SENT, sender or "unknown", m.queue_label(routing_key)).inc()


def _on_received(request: Any = None, **_: Any) -> None:
    _child(m.TASKS_RECEIVED, request.name, _queue_of(request)).inc()


def _due_time(request: Any) -> float | None:
    """When the task could first start: its publish time, or its ETA if that is later."""
    published = request_header(request, PUBLISHED_AT)
    if published is None:
        return None
    due = float(published)
    eta = getattr(request, "eta", None)
    if eta:
        with contextlib.suppress(ValueError):  # not an ISO date: the publish time stands
            due = max(due, datetime.fromisoformat(str(eta)).timestamp())
    return due


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    request = task.request  # one context-stack lookup, not one per use
    labels = (task.name, _queue_of(request))
    _child(m.TASKS_STARTED, *labels).inc()
    m.TASKS_ACTIVE.inc()
    due = _due_time(request)
    waited = max(0.0, time.time() - due) if due is not None else None
    if waited is not None:
        _child(m.TASK_QUEUE_WAIT, *labels).observe(waited)
    if task_id:
        _started[task_id] = (time.perf_counter(), waited)


_OUTCOME = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry", "REVOKED": "revoked"}


def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    m.TASKS_ACTIVE.dec()
    entry = _started.pop(task_id, None) if task_id else None
    if entry is not None:
        outcome = _OUTCOME.get(state or "", "failure")
        _child(m.TASK_RUNTIME, *_labels(task), outcome).observe(time.perf_counter() - entry[0])


def _on_success(sender: Any = None, **_: Any) -> None:
    _child(m.TASKS_SUCCEEDED, *_labels(sender)).inc()


def _on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    labels = _labels(sender)
    _child(m.TASKS_FAILED, *labels).inc()
    _child(m.TASK_EXCEPTIONS, *labels, type(exception).__name__).inc()


def _on_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    _child(m.TASKS_RETRIED, sender.name, _queue_of(request)).inc()


def _on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", None) or getattr(request, "name", None) or "unknown"
    _child(m.TASKS_REVOKED, name, _queue_of(request)).inc()


def _on_rejected(exc: BaseException | None = None, **_: Any) -> None:
    if exc is None:
        reason = "unknown_format"
    elif isinstance(exc, ContentDisallowed):
        reason = "content_disallowed"
    else:
        reason = "invalid"
    _child(m.TASKS_REJECTED, reason).inc()


def _on_unknown(**_: Any) -> None:
    m.TASKS_UNKNOWN.inc()


def connect() -> None:
    """Connect this module's receivers (called once by app.worker.signals.connect_all)."""
    signals.before_task_publish.connect(_on_publish, dispatch_uid="librarian.metrics.on_publish")
    signals.task_received.connect(_on_received, dispatch_uid="librarian.metrics.on_received")
    signals.task_prerun.connect(_on_prerun, dispatch_uid="librarian.metrics.on_prerun")
    signals.task_postrun.connect(_on_postrun, dispatch_uid="librarian.metrics.on_postrun")
    signals.task_success.connect(_on_success, dispatch_uid="librarian.metrics.on_success")
    signals.task_failure.connect(_on_failure, dispatch_uid="librarian.metrics.on_failure")
    signals.task_retry.connect(_on_retry, dispatch_uid="librarian.metrics.on_retry")
    signals.task_revoked.connect(_on_revoked, dispatch_uid="librarian.metrics.on_revoked")
    signals.task_rejected.connect(_on_rejected, dispatch_uid="librarian.metrics.on_rejected")
    signals.task_unknown.connect(_on_unknown, dispatch_uid="librarian.metrics.on_unknown")
