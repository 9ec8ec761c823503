"""Worker lifecycle wiring: logging, Sentry, database, start-up checks."""

from __future__ import annotations

from typing import Any

import structlog
from celery import signals

from app.core.config import mask_url, settings

log = structlog.get_logger("librarian.worker")


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Connecting to this signal stops Celery from configuring logging itself.
    from app.observability.logging import configure_logging

    configure_logging("worker")


@signals.worker_init.connect
def _worker_init(sender: Any = None, **_: Any) -> None:
    from app.observability.sentry import init_sentry
    from app.worker.startup_checks import check_visibility_timeout

    init_sentry("worker")
    app = sender.app if sender is not None else None
    if app is not None:
        check_visibility_timeout(app)


@signals.worker_process_init.connect
def _worker_process_init(**_: Any) -> None:
    # Connections must not cross fork(): drop any engine the parent created.
    from app.core.db import get_engine

    get_engine().dispose(close=False)


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    from app.core.db import init_db
    from app.core.redis import get_redis
    from app.worker.startup_checks import check_broker_durability

    init_db()
    for warning in check_broker_durability(get_redis()):
        log.warning("broker durability", problem=warning)
    log.info(
        "worker ready",
        hostname=getattr(sender, "hostname", None),
        broker=mask_url(settings.broker_url),
        queues=settings.worker_queues,
        concurrency=settings.WORKER_CONCURRENCY,
    )


_heartbeat: Any = None


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    from app.worker.heartbeat import Heartbeat

    global _heartbeat
    _heartbeat = Heartbeat(sender.hostname, pool_size=sender.controller.concurrency)
    _heartbeat.start()


@signals.task_received.connect
def _note_task_received(**_: Any) -> None:
    # task_received fires in the main process, where the heartbeat thread lives.
    import time

    if _heartbeat is not None:
        _heartbeat.last_task_at = time.time()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
