"""One structlog processor chain for structlog and stdlib loggers (Celery, kombu, uvicorn, ...)."""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from functools import lru_cache
from typing import Any

import structlog
import structlog.tracebacks

from app.core.config import mask_url, settings

SECRET_KEYS = ("password", "secret", "token", "dsn", "authorization")
_service = "librarian"
_correlation_id: Any = None  # asgi_correlation_id's ContextVar, imported on first use
_stream: Any = None  # where the stdout handler writes; configure_logging sets it
_direct_processors: list[Any] = []  # the chain of direct_logger(), filled in place by configure_logging


def _add_service(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("service", _service)
    return event_dict


def _add_request_id(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The API's request id (asgi-correlation-id) on every line logged while serving a request."""
    if not event_dict.get("request_id"):
        global _correlation_id
        if _correlation_id is None:
            # Starlette comes with it (~64 ms, -X importtime): not paid by processes serving no request.
            from asgi_correlation_id import correlation_id  # noqa: PLC0415

            _correlation_id = correlation_id
        request_id = _correlation_id.get()
        if request_id:
            event_dict["request_id"] = request_id
    return event_dict


@lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    # Log lines reuse a handful of keys: decide once per key, not once per key per line.
    lowered = key.lower()
    return any(word in lowered for word in SECRET_KEYS)


def _mask_secrets(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Never log a secret: mask values of secret-looking keys and passwords inside URLs."""
    for key, value in list(event_dict.items()):
        if _is_secret_key(key) and value:
            event_dict[key] = "***"
        elif isinstance(value, str) and "://" in value and "@" in value:
            event_dict[key] = mask_url(value)
    return event_dict


def shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _add_service,
        _add_request_id,
        _mask_secrets,
    ]


class _LineWriter:
    """The end of a direct_logger() chain: writes the rendered line where the stdout handler writes,
    at the level the stdlib logger of the same name has (what filter_by_level asks)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._level_of = logging.getLogger(name)

    @property
    def disabled(self) -> bool:
        return self._level_of.disabled

    def getEffectiveLevel(self) -> int:
        return self._level_of.getEffectiveLevel()

    def write(self, line: str) -> None:
        stream = _stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    debug = info = warning = error = critical = msg = write


def direct_logger(name: str) -> Any:
    """A structlog logger whose lines skip the stdlib logging machinery (LogRecord, handler lock,
    formatter): the same processors, rendering, stream and level as every other line, at ~30 instead
    of ~70 us per line (measured in process). For the per-task lines of librarian.task, which no
    stdlib handler or filter needs: Sentry's logging integration ignores that logger, and a failed
    task reaches Sentry from app/observability/sentry_tasks.py. Written by hand because structlog's
    loggers write to a file object, not through the stdlib handler this process configured."""
    return structlog.wrap_logger(_LineWriter(name), processors=_direct_processors, wrapper_class=structlog.BoundLogger)


# Until configure_logging runs (an import-time line, a test that never configures): JSON lines.
_direct_processors[:] = [structlog.stdlib.filter_by_level, *shared_processors(), structlog.processors.JSONRenderer()]


class _InspectMissIsInfo(logging.Filter):
    """Flower's "Inspect method X failed" (no worker answered in time) becomes INFO.

    Flower inspects at start, before the worker answers, and whenever no worker is up; a missing
    worker is reported by /health and the alerts, so this line needs no person. Inspect errors
    with a reason (connection errors, exceptions) keep their level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Inspect method %s failed" and record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(service: str, level: str | None = None) -> None:
    """Configure structlog + stdlib once per process. JSON by default, console when LOG_FORMAT=console.

    `service` names the process on every line; LIBRARIAN_PROCESS, set by `librarian worker|beat|
    flower|api` before the process starts, wins over it (Celery's setup_logging signal fires in
    worker and beat alike, and its receiver cannot tell them apart).
    """
    level = (level or settings.LOG_LEVEL).upper()
    if settings.LOG_FORMAT == "console":
        renderer: Any = structlog.dev.ConsoleRenderer()
        final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]
    else:
        final = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # No frame locals: they may hold secrets and make lines enormous.
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    _direct_processors[:] = [
        structlog.stdlib.filter_by_level,
        *shared_processors(),
        structlog.processors.StackInfoRenderer(),
        *final[1:],  # without remove_processors_meta: no ProcessorFormatter on this path
    ]
    structlog.configure(
        processors=[
            # A line below the level is dropped before any processor runs (the DEBUG task lines).
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structured": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": final,
                    "foreign_pre_chain": shared_processors(),
                }
            },
            "handlers": {
                "stdout": {
                    "class": "logging.StreamHandler",
                    "stream": sys.stdout,
                    "formatter": "structured",
                }
            },
            "root": {"handlers": ["stdout"], "level": level},
            "loggers": {
                # uvicorn and celery install handlers of their own; route them through ours.
                **{
                    name: {"handlers": ["stdout"], "level": level, "propagate": False}
                    for name in ("uvicorn", "uvicorn.error", "celery", "kombu")
                },
                # One access line per request: ours (librarian.api.access, with the request id).
                # Without a handler uvicorn does not even format its own (hasHandlers() is False).
                "uvicorn.access": {"handlers": [], "propagate": False},
                # Flower (tornado) logs through the root logger, hence through this formatter.
                "flower.inspector": {"filters": ["inspect_miss_is_info"]},
            },
            "filters": {"inspect_miss_is_info": {"()": _InspectMissIsInfo}},
        }
    )
    global _stream
    _stream = sys.stdout  # the stdout handler's stream (a worker later redirects sys.stdout to a logger)
    logging.captureWarnings(True)  # Python warnings become JSON lines too
    # No line shows where it was logged from, or from which thread or process: skip collecting it
    # (the logging HOWTO's "Optimization" table). Finding the caller walks the stack on every
    # record; together ~11 of ~59 us per line, 3 lines per task (docs/performance.md).
    logging._srcfile = None  # private: stdlib.logging._srcfile
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _service
    _service = os.environ.get("LIBRARIAN_PROCESS") or service
