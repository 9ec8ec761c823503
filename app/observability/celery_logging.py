"""Task lifecycle log lines, with task_id, task_name, queue, retries and the request id bound.

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

from app.observability.celery_metrics import REQUEST_ID, _queue_of, request_header, started_at

log = structlog.get_logger("librarian.task")


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


def _received(request: Any = None, **_: Any) -> None:
    log.info(
        "task received",
        task_id=request.id,
        task_name=request.name,
        queue=_queue_of(request),
        request_id=request_header(request, REQUEST_ID),
        eta=str(request.eta) if request.eta else None,
    )


def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    _bind(task)
    log.info("task started")


def _runtime(task_id: str | None) -> float | None:
    # One start time per task, kept by the metrics receivers (success/failure/retry signals are
    # sent before task_postrun, where they drop it).
    started = started_at(task_id)
    return round(time.perf_counter() - started, 6) if started is not None else None


def _success(sender: Any = None, **_: Any) -> None:
    log.info("task succeeded", runtime_s=_runtime(sender.request.id))


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    log.warning("task retried", reason=str(reason), runtime_s=_runtime(getattr(request, "id", None)))


def _failure(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, einfo: Any = None, **_: Any
) -> None:
    runtime = _runtime(task_id)
    expected = getattr(sender, "throws", ())
    if exception is not None and expected and isinstance(exception, expected):
        # An outcome the task declares (`throws`, e.g. a pipeline stage refusing bad input): one
        # line, no traceback. Celery's own line drops to INFO ("raised expected"), below the
        # WARNING celery.app.trace is set to, and Sentry's Celery integration skips it.
        log.info("task rejected", error=type(exception).__name__, error_message=str(exception), runtime_s=runtime)
        return
    if isinstance(exception, SoftTimeLimitExceeded):
        log.warning("task soft time limit exceeded", runtime_s=runtime)
    log.error(
        "task failed",
        error=type(exception).__name__,
        error_message=str(exception),
        runtime_s=runtime,
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
