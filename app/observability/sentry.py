"""Sentry set-up for the API and the worker: integrations do the work; no-op without a DSN."""

from __future__ import annotations

import logging
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
            CeleryIntegration(monitor_beat_tasks=True, propagate_traces=True),
            # Breadcrumbs (INFO) and events (ERROR) as by default. No Sentry Logs handler: we do
            # not send Sentry Logs (enable_logs is off), yet it inspected every record to drop it.
            LoggingIntegration(sentry_logs_level=None),
        ],
        # The Redis integration is auto-enabled and builds a span and a breadcrumb for every Redis
        # command, sampled or not: in the worker that is the consumer's BRPOP, every ack pipeline
        # and every result write, ~1-2 ms of CPU per no-op task (docs/performance.md). Errors,
        # task failures and API-to-task traces do not depend on it; Redis breadcrumbs and
        # db.redis spans in sampled traces are what is given up.
        disabled_integrations=[RedisIntegration()],
    )
    # Task failures arrive through the Celery integration; our own "task failed" line would be a
    # second event for the same error.
    ignore_logger("librarian.task")
    if not sentry_sdk.get_client().options["debug"]:
        # The SDK sets its own logger to DEBUG and drops every record with a filter unless `debug`
        # is on; its hot paths log a few DEBUG lines per transaction (per task and per request,
        # sampled or not), each a LogRecord built only to be dropped. Debug off: nothing is shown
        # either way, so stop building the low-level ones.
        logging.getLogger("sentry_sdk.errors").setLevel(logging.WARNING)
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True
