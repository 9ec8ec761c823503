"""Sentry around tasks in the worker: what the SDK's Celery integration does there, paid only when used.

In a worker the integration wraps every task run, sampled or not: it forks the scopes, continues
the incoming trace, starts a transaction, opens a child span and builds a kombu Connection to name
the transport. That is ~0.5 ms of CPU per no-op task in a pool child, more than the task itself
(docs/performance.md, `make bench-overhead`), and no option turns it off per task. So the worker
initialises Sentry without it (`init_sentry("worker")`) and these signal receivers do its work:

- every task runs in its own isolation scope (a fork: microseconds), so what a task tags
  (`tag_part`) ends with it, and its events carry `celery_task_id` and the task name as their
  transaction, as the integration's did;
- a transaction is started only when the trace is sampled: the incoming `sentry-trace` header
  says so, or there is none and traces are sampled at all (SENTRY_TRACES_SAMPLE_RATE > 0; the SDK
  then decides by the rate). An API request's sampled trace continues into its task;
- a failure is one error event (mechanism `celery`, unhandled), none for the exceptions a task
  declares (`throws`); a soft time limit is fingerprinted by task, as the integration does;
- tasks sent by beat carry the integration's `sentry-monitor-*` headers (beat keeps the
  integration, which opens the check-in): their outcome closes it with `capture_checkin`;
- a task published from a task carries the trace on: the running transaction's headers, or the
  incoming ones unchanged when the trace was not sampled;
- a pool child flushes Sentry's queue when it exits (the integration patched billiard for that).

The API and beat keep the integration: they only publish, and there it costs nothing per task.
The header names are the integration's wire format, pinned with the SDK version in
tests/contract/test_private_couplings.py.
"""

from __future__ import annotations

import time
from typing import Any

import sentry_sdk
from celery import current_task, signals
from celery.exceptions import SoftTimeLimitExceeded
from sentry_sdk.crons import MonitorStatus, capture_checkin
from sentry_sdk.utils import event_from_exception

from app.observability.celery_metrics import request_header

TRACE_HEADER = "sentry-trace"  # private: sentry_sdk.celery.trace_headers
BAGGAGE_HEADER = "baggage"
MONITOR_SLUG = "sentry-monitor-slug"  # private: sentry_sdk.celery.monitor_headers
MONITOR_CHECK_IN_ID = "sentry-monitor-check-in-id"
MONITOR_START = "sentry-monitor-start-timestamp-s"
MONITOR_CONFIG = "sentry-monitor-config"
TRANSACTION_OP = "queue.task.celery"  # the integration's op and origin: dashboards keep working
ORIGIN = "auto.queue.celery"

# The running task's scope and transaction.
_running: dict[str, tuple[Any, Any]] = {}


def _header(request: Any, key: str) -> Any:
    """A header the integration wrote both at the top level and in the nested `headers` (celery#4875)."""
    value = request_header(request, key)
    if value is None:
        nested = getattr(request, "headers", None)
        if isinstance(nested, dict):
            value = nested.get(key)
    return value


def _incoming(request: Any) -> dict[str, str]:
    """The trace headers a task came with (none without a `sentry-trace`)."""
    trace = _header(request, TRACE_HEADER)
    if not trace:
        return {}
    baggage = _header(request, BAGGAGE_HEADER)
    return {TRACE_HEADER: trace, BAGGAGE_HEADER: baggage} if baggage else {TRACE_HEADER: trace}


def trace_is_sampled(trace_header: str | None, tracing: bool) -> bool:
    """Start a transaction? Yes when the incoming trace is sampled ("<trace>-<span>-1"); without a
    decision in the header, when traces are sampled at all (the SDK then samples by rate)."""
    if trace_header:
        parts = trace_header.strip().split("-")
        if len(parts) >= 3 and parts[2] in ("0", "1"):
            return parts[2] == "1"
    return tracing


def _tracing() -> bool:
    options = sentry_sdk.get_client().options
    return bool(options.get("traces_sample_rate") or options.get("traces_sampler"))


def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None or task_id is None or not sentry_sdk.get_client().is_active():
        return
    request = task.request
    scope_manager = sentry_sdk.isolation_scope()
    scope = scope_manager.__enter__()
    scope.clear_breadcrumbs()
    scope.set_tag("celery_task_id", task_id)
    scope.set_extra("celery-job", {"task_name": task.name})
    scope.set_transaction_name(task.name, source="task")
    trace = _header(request, TRACE_HEADER)
    transaction = None
    if trace_is_sampled(trace, _tracing()):
        transaction = sentry_sdk.continue_trace(
            _incoming(request), op=TRANSACTION_OP, name=task.name, source="task", origin=ORIGIN
        )
        transaction.set_status("ok")
        sentry_sdk.start_transaction(transaction).__enter__()
    _running[task_id] = (scope_manager, transaction)


def _postrun(task_id: str | None = None, **_: Any) -> None:
    entry = _running.pop(task_id, None) if task_id is not None else None
    if entry is None:
        return
    scope_manager, transaction = entry
    if transaction is not None:
        transaction.__exit__(None, None, None)
    scope_manager.__exit__(None, None, None)


def _failure(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, **_: Any) -> None:
    if exception is None or not sentry_sdk.get_client().is_active():
        return
    entry = _running.get(task_id or "")
    if entry is not None and entry[1] is not None:
        entry[1].set_status("internal_error")
    expected = getattr(sender, "throws", ())
    if expected and isinstance(exception, expected):
        return
    client = sentry_sdk.get_client()
    event, hint = event_from_exception(
        (type(exception), exception, exception.__traceback__),
        client_options=client.options,
        mechanism={"type": "celery", "handled": False},
    )
    if isinstance(exception, SoftTimeLimitExceeded):
        event["fingerprint"] = ["celery", "SoftTimeLimitExceeded", getattr(sender, "name", "unknown")]
    sentry_sdk.capture_event(event, hint=hint)


def _check_in(request: Any, status: str) -> None:
    slug = _header(request, MONITOR_SLUG)
    if slug is None or not sentry_sdk.get_client().is_active():
        return
    started = _header(request, MONITOR_START)
    config: Any = _header(request, MONITOR_CONFIG) or {}  # as beat wrote it: a MonitorConfig dict
    capture_checkin(
        monitor_slug=slug,
        monitor_config=config,
        check_in_id=_header(request, MONITOR_CHECK_IN_ID),
        duration=time.time() - float(started) if started is not None else None,
        status=status,
    )


def _success(sender: Any = None, **_: Any) -> None:
    _check_in(sender.request, MonitorStatus.OK)


def _check_in_failed(sender: Any = None, **_: Any) -> None:
    _check_in(sender.request, MonitorStatus.ERROR)


def _retried(request: Any = None, **_: Any) -> None:
    entry = _running.get(getattr(request, "id", None) or "")
    if entry is not None and entry[1] is not None:
        entry[1].set_status("aborted")  # as the integration marks a retry
    _check_in(request, MonitorStatus.ERROR)


def _publish(headers: dict | None = None, **_: Any) -> None:
    """Carry the trace on to a task published from this one."""
    if headers is None or TRACE_HEADER in headers:
        return
    span = sentry_sdk.get_current_span()
    if span is not None and span.sampled:
        traceparent, baggage = sentry_sdk.get_traceparent(), sentry_sdk.get_baggage()
        if traceparent:
            headers[TRACE_HEADER] = traceparent
        if baggage:
            headers[BAGGAGE_HEADER] = baggage
        return
    if current_task:  # a proxy: false outside a running task (the API, beat)
        headers.update(_incoming(current_task.request))


def _flush(**_: Any) -> None:
    sentry_sdk.flush(timeout=2.0)


def connect() -> None:
    """Connect the receivers (the worker only: app.worker.signals.connect_all)."""
    signals.task_prerun.connect(_prerun, dispatch_uid="librarian.sentry.prerun")
    signals.task_postrun.connect(_postrun, dispatch_uid="librarian.sentry.postrun")
    signals.task_failure.connect(_failure, dispatch_uid="librarian.sentry.failure")
    signals.task_failure.connect(_check_in_failed, dispatch_uid="librarian.sentry.checkin_failure")
    signals.task_success.connect(_success, dispatch_uid="librarian.sentry.checkin_success")
    signals.task_retry.connect(_retried, dispatch_uid="librarian.sentry.checkin_retry")
    signals.before_task_publish.connect(_publish, dispatch_uid="librarian.sentry.publish")
    signals.worker_process_shutdown.connect(_flush, dispatch_uid="librarian.sentry.flush")
