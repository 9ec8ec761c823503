"""Task lifecycle log lines, with task_id, task_name, queue, retries and the request id bound.

One line per task outcome at INFO or above ("task succeeded", "task rejected", "task retried",
"task failed", "task revoked"), carrying `queue_wait_s` (due to start) and `runtime_s`, written by
structlog directly (logging.direct_logger: ~27 us a line, a no-op task costs ~1 ms; see
docs/performance.md). "task received" and "task started" are DEBUG (LOG_LEVEL=DEBUG shows them).

The request id of the HTTP call that enqueued a task travels in the message headers
(see celery_metrics.REQUEST_ID) and is bound here, so one grep follows a request into its task.
Celery's own per-task INFO lines are turned down in favour of these structured ones.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

from app.observability.celery_metrics import REQUEST_ID, _queue_of, request_header, started
from app.observability.logging import direct_logger

log = direct_logger("librarian.task")  # the per-task lines: no stdlib round trip (logging.py)


def quiet_celery_task_lines() -> None:
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _bind(task: Any) -> None:
    request = task.request
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task_id=request.id,
        task_name=task.name,
        queue=_queue_of(request),
        retries=request.retries or 0,
        request_id=request_header(request, REQUEST_ID),
    )


_level_of = logging.getLogger("librarian.task")  # the level the task lines follow (LOG_LEVEL)


def _received(request: Any = None, **_: Any) -> None:
    if not _level_of.isEnabledFor(logging.DEBUG):  # skip building the fields (stdlib caches this)
        return
    log.debug(
        "task received",
        task_id=request.id,
        task_name=request.name,
        queue=_queue_of(request),
        request_id=request_header(request, REQUEST_ID),
        eta=str(request.eta) if request.eta else None,
    )


def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _bind(task)
    if _level_of.isEnabledFor(logging.DEBUG):
        log.debug("task started")


def _timing(task_id: str | None) -> dict[str, float | None]:
    # One start time and queue wait per task, kept by the metrics receivers (success/failure/retry
    # signals are sent before task_postrun, where they drop them).
    entry = started(task_id)
    if entry is None:
        return {"queue_wait_s": None, "runtime_s": None}
    began, waited = entry
    return {
        "queue_wait_s": round(waited, 6) if waited is not None else None,
        "runtime_s": round(time.perf_counter() - began, 6),
    }


def _success(sender: Any = None, **_: Any) -> None:
    log.info("task succeeded", **_timing(sender.request.id))


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    log.warning("task retried", reason=str(reason), **_timing(getattr(request, "id", None)))


def _failure(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, einfo: Any = None, **_: Any
) -> None:
    timing = _timing(task_id)
    expected = getattr(sender, "throws", ())
    if exception is not None and expected and isinstance(exception, expected):
        # An outcome the task declares (`throws`, e.g. a pipeline stage refusing bad input): one
        # line, no traceback. Celery's own line drops to INFO ("raised expected"), below the
        # WARNING celery.app.trace is set to, and Sentry's Celery integration skips it.
        log.info("task rejected", error=type(exception).__name__, error_message=str(exception), **timing)
        return
    if isinstance(exception, SoftTimeLimitExceeded):
        log.warning("task soft time limit exceeded", **timing)
    log.error(
        "task failed",
        error=type(exception).__name__,
        error_message=str(exception),
        **timing,
        exc_info=(type(exception), exception, exception.__traceback__) if exception else None,
    )


def _revoked(request: Any = None, terminated: bool = False, expired: bool = False, **_: Any) -> None:
    log.warning("task revoked", task_id=getattr(request, "id", None), terminated=terminated, expired=expired)


def connect() -> None:
    """Connect this module's receivers (called once by app.worker.signals.connect_all)."""
    signals.task_received.connect(_received, dispatch_uid="librarian.logging.received")
    signals.task_prerun.connect(_prerun, dispatch_uid="librarian.logging.prerun")
    signals.task_success.connect(_success, dispatch_uid="librarian.logging.success")
    signals.task_retry.connect(_retry, dispatch_uid="librarian.logging.retry")
    signals.task_failure.connect(_failure, dispatch_uid="librarian.logging.failure")
    signals.task_revoked.connect(_revoked, dispatch_uid="librarian.logging.revoked")
