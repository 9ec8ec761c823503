"""What the worker's Sentry receivers (app/observability/sentry_tasks.py) assume about sentry-sdk's
Celery integration: the message headers it writes where it publishes (API, beat), one check per id."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from sentry_sdk.integrations import celery as celery_integration
from sentry_sdk.integrations.celery import beat
from sentry_sdk.tracing import BAGGAGE_HEADER_NAME, SENTRY_TRACE_HEADER_NAME

from app.observability import sentry_tasks

FIX = "update app/observability/sentry_tasks.py to match (and this check), or pin sentry-sdk below this version"


def check_monitor_headers() -> None:
    """Beat (which keeps the integration) opens a cron check-in and names it in these headers; the
    worker closes it from them."""
    source = inspect.getsource(beat) + inspect.getsource(celery_integration)
    for header in (
        sentry_tasks.MONITOR_SLUG,
        sentry_tasks.MONITOR_CHECK_IN_ID,
        sentry_tasks.MONITOR_START,
        sentry_tasks.MONITOR_CONFIG,
    ):
        assert f'"{header}"' in source, f"sentry-sdk's Celery beat integration no longer writes {header!r}; {FIX}"


def check_trace_headers() -> None:
    """The API (which keeps the integration) puts the trace's propagation headers on each task it
    sends, at the top level and in the nested `headers`; the worker continues the trace from them."""
    source = inspect.getsource(celery_integration._update_celery_task_headers)
    assert "iter_trace_propagation_headers" in source and 'setdefault("headers", {})' in source, (
        f"sentry-sdk's Celery integration no longer writes the trace propagation headers as before; {FIX}"
    )
    assert (SENTRY_TRACE_HEADER_NAME, BAGGAGE_HEADER_NAME) == (sentry_tasks.TRACE_HEADER, sentry_tasks.BAGGAGE_HEADER)


CHECKS: dict[str, Callable[[], None]] = {
    "sentry_sdk.celery.monitor_headers": check_monitor_headers,
    "sentry_sdk.celery.trace_headers": check_trace_headers,
}
