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
    from app.observability.celery_logging import quiet_celery_task_lines
    from app.observability.logging import configure_logging

    configure_logging("worker")
    quiet_celery_task_lines()


@signals.worker_init.connect
def _worker_init(sender: Any = None, **_: Any) -> None:
    from app.observability.sentry import init_sentry
    from app.worker.startup_checks import check_visibility_timeout, prepare_database

    init_sentry("worker")
    app = sender.app if sender is not None else None
    if app is not None:
        check_visibility_timeout(app)
        prepare_database()  # before the pool forks (worker_process_init drops the engine in children)
        from app.observability.metrics import initialise_task_series
        from app.worker.celery_app import queue_for

        initialise_task_series({name: queue_for(name) for name in app.tasks if not name.startswith("celery.")})


@signals.beat_init.connect
def _beat_init(**_: Any) -> None:
    # Sentry in beat too: the Celery integration's cron monitoring (monitor_beat_tasks) opens its
    # check-ins where beat sends the task; without this the workers' half never had a start.
    from app.observability.sentry import init_sentry

    init_sentry("beat")


@signals.worker_process_init.connect
def _worker_process_init(**_: Any) -> None:
    # Connections must not cross fork(): drop any engine the parent created.
    from app.core.db import get_engine

    get_engine().dispose(close=False)


@signals.worker_process_shutdown.connect
def _worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


@signals.worker_ready.connect
def _start_metrics_server(**_: Any) -> None:
    import os

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("worker metrics disabled: PROMETHEUS_MULTIPROC_DIR is not set (start with `librarian worker`)")
        return
    from app.core.redis import get_redis
    from app.observability.metrics_server import start_metrics_server
    from app.observability.queues import BrokerCollector

    start_metrics_server(
        settings.WORKER_METRICS_PORT,
        [BrokerCollector(get_redis, include_workers=False)],
        addr=settings.WORKER_METRICS_HOST,
    )
    log.info("worker metrics listening", url=f"http://{settings.WORKER_METRICS_HOST}:{settings.WORKER_METRICS_PORT}/metrics")


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    from app.core.redis import get_redis
    from app.worker.startup_checks import check_broker_durability

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


@signals.worker_ready.connect
def _start_recovery(sender: Any = None, **_: Any) -> None:
    from app.worker import recovery

    recovery.start(sender.app)


@signals.worker_shutdown.connect
def _stop_recovery(**_: Any) -> None:
    from app.worker import recovery

    recovery.stop()


@signals.worker_ready.connect
def _start_pause_listener(**_: Any) -> None:
    from app.worker.pause import registry

    registry.start()


@signals.task_prerun.connect
def _announce_start(task: Any = None, task_id: str | None = None, **_: Any) -> None:
    _announce(task, task_id, "started")


@signals.task_postrun.connect
def _announce_end(task: Any = None, task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    _announce(task, task_id, (state or "unknown").lower())


def _announce(task: Any, task_id: str | None, event: str) -> None:
    """Status events on agent:status:{owner} for tasks that have an owner."""
    owner = getattr(task, "owner", None)
    if not owner:
        return
    from app.core.agents import publish_status
    from app.core.redis import get_redis

    try:
        publish_status(get_redis(), owner, {"event": event, "task_id": task_id, "task_name": task.name})
    except Exception:
        log.warning("status event not published", owner=owner, event=event)
