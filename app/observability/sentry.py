"""Sentry set-up for the API and the worker: integrations do the work; no-op without a DSN.

Two helpers for validate_file: `tag_part` puts the part id on every event of the running task
(the Celery integration's event for a failed task included), and `capture_check_errors` sends
one event per (check, object type) a model's checks raised on, grouped by that pair.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import sentry_sdk
from sentry_sdk.types import Event, Hint

from app.core.config import settings
from app.observability.logging import SECRET_KEYS


def _scrub(event: Event, _hint: Hint) -> Event:
    """Drop secret-looking values the default scrubber does not know (extra, contexts, tags)."""

    for section in ("extra", "tags"):
        values: dict[str, Any] = event.get(section) or {}  # type: ignore[assignment]  # a TypedDict key by name
        for key in list(values):
            if any(word in str(key).lower() for word in SECRET_KEYS):
                values[key] = "[Filtered]"
    return event


def init_sentry(component: str) -> bool:
    """Initialise the SDK for 'api' or 'worker'. Returns False (and does nothing) without a DSN."""
    if not settings.SENTRY_DSN:
        return False
    # The integrations import FastAPI and Celery both (~350 ms, -X importtime): paid only with a DSN.
    from sentry_sdk.integrations.celery import CeleryIntegration  # noqa: PLC0415
    from sentry_sdk.integrations.fastapi import FastApiIntegration  # noqa: PLC0415
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger  # noqa: PLC0415
    from sentry_sdk.integrations.redis import RedisIntegration  # noqa: PLC0415
    from sentry_sdk.integrations.starlette import StarletteIntegration  # noqa: PLC0415
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber  # noqa: PLC0415

    # In the worker, app/observability/sentry_tasks.py does the integration's work per task, paid
    # only where used; the API and beat keep it (they publish, and there it costs nothing per task).
    in_worker = component == "worker"
    celery_integrations = [] if in_worker else [CeleryIntegration(monitor_beat_tasks=True, propagate_traces=True)]
    sentry_sdk.init(
        dsn=settings.SENTRY_DSN,
        environment=settings.ENVIRONMENT,
        release=settings.RELEASE,
        traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE,
        send_default_pii=False,
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, "dsn", "redis_url", "broker_url"]),
        before_send=_scrub,
        integrations=[
            StarletteIntegration(),
            FastApiIntegration(),
            *celery_integrations,
            # Breadcrumbs (INFO) and events (ERROR) as by default. No Sentry Logs handler: we do
            # not send Sentry Logs (enable_logs is off), yet it inspected every record to drop it.
            LoggingIntegration(sentry_logs_level=None),
        ],
        # The Redis integration is auto-enabled and builds a span and a breadcrumb for every Redis
        # command, sampled or not: in the worker that is the consumer's BRPOP, every ack pipeline
        # and every result write, ~1-2 ms of CPU per no-op task (docs/performance.md). Errors,
        # task failures and API-to-task traces do not depend on it; Redis breadcrumbs and
        # db.redis spans in sampled traces are what is given up.
        disabled_integrations=[RedisIntegration(), *([CeleryIntegration] if in_worker else [])],
    )
    # Task failures arrive through the Celery integration; our own "task failed" line would be a
    # second event for the same error.
    ignore_logger("librarian.task")
    if in_worker:
        # As the integration does: Celery's own lines about a failed task ("raised unexpected")
        # would be a second event; sentry_tasks sends the one.
        for name in ("celery.app.trace", "celery.worker.job", "celery.redirected"):
            ignore_logger(name)
    if not sentry_sdk.get_client().options["debug"]:
        # The SDK sets its own logger to DEBUG and drops every record with a filter unless `debug`
        # is on; its hot paths log a few DEBUG lines per transaction (per task and per request,
        # sampled or not), each a LogRecord built only to be dropped. Debug off: nothing is shown
        # either way, so stop building the low-level ones.
        logging.getLogger("sentry_sdk.errors").setLevel(logging.WARNING)
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


MAX_CHECK_ERROR_EVENTS = 20  # per part: a model whose every object breaks a check sends no flood


def tag_part(part_id: str) -> None:
    """Tag the events of the running task with its part. Each task runs in its own isolation scope
    (app/observability/sentry_tasks.py), so the tag ends with the task."""
    sentry_sdk.set_tag("part_id", part_id)


@functools.cache
def rhino3dm_version() -> str:
    try:
        return version("rhino3dm")
    except PackageNotFoundError:
        return "unknown"


def capture_check_errors(
    part_id: str, errors: dict[tuple[str, str], dict[str, Any]], archive_version: int | None
) -> int:
    """One event per (check, object type), fingerprinted by that pair; `errors` maps it to
    {"count", "exceptions"} (exception class names). The event names only the check, the class
    names and counts: no exception message, object name, id, user string or file name (and no
    breadcrumbs, which may quote log lines). Returns the number of events sent."""
    if not sentry_sdk.get_client().is_active():
        return 0
    sent = 0
    for (check, object_type), entry in sorted(errors.items())[:MAX_CHECK_ERROR_EVENTS]:
        with sentry_sdk.isolation_scope() as scope:  # forks the current scope too: both cleared
            scope.clear_breadcrumbs()
            sentry_sdk.get_current_scope().clear_breadcrumbs()
            sentry_sdk.capture_event(
                {
                    "level": "error",
                    "logger": "librarian.validation",
                    "message": f"check {check!r} raised on {object_type} ({', '.join(entry['exceptions'])})",
                    "fingerprint": ["check-error", check, object_type],
                    "tags": {
                        "part_id": part_id,
                        "check": check,
                        "object_type": object_type,
                        "rhino3dm_version": rhino3dm_version(),
                        "archive_version": str(archive_version),
                    },
                    "extra": {"occurrences": entry["count"], "exceptions": entry["exceptions"]},
                }
            )
        sent += 1
    return sent
