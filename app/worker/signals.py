"""Worker lifecycle wiring: logging, Sentry, database, metrics, heartbeat, recovery, pause listener.

Nothing connects on import: `connect_all()`, called once by the app factory
(app/worker/celery_app.py), connects these receivers and those of the observability modules.
"""

from __future__ import annotations

import os
import time
from typing import Any

import structlog
from celery import signals
from prometheus_client import multiprocess

from app.broker import holders, recovery
from app.broker.keys import ISSUED_HEADER
from app.core.agents import publish_status
from app.core.config import mask_url, settings
from app.core.db import get_engine
from app.core.redis import get_redis
from app.core.task_registry import note_finished
from app.observability import celery_logging, celery_metrics, model_metrics, sentry_tasks
from app.observability.celery_metrics import request_header
from app.observability.logging import configure_logging
from app.observability.metrics import initialise_task_series
from app.observability.metrics_server import start_metrics_server
from app.observability.queues import BrokerCollector
from app.observability.sentry import init_sentry
from app.storage import get_store, sweep_temp
from app.worker.heartbeat import Heartbeat
from app.worker.pause import registry as pause_registry
from app.worker.routing import queue_for
from app.worker.startup_checks import check_broker_durability, check_visibility_timeout, prepare_database

log = structlog.get_logger("librarian.worker")

_heartbeat: Heartbeat | None = None


def _setup_logging(**_: Any) -> None:
    # Connecting to this signal stops Celery from configuring logging itself.
    configure_logging("worker")
    celery_logging.quiet_celery_task_lines()


def _worker_init(sender: Any = None, **_: Any) -> None:
    init_sentry("worker")
    app = sender.app if sender is not None else None
    if app is not None:
        # Before the consumer starts: every message this process takes is recorded as this run's.
        holders.start_incarnation(sender.hostname)
        check_visibility_timeout(app)
        prepare_database()  # before the pool forks (worker_process_init drops the engine in children)
        # Copies of stored files that killed tasks left behind (app/storage/tempfiles.py).
        log.info("storage ready", store=get_store().describe(), temp_files_swept=sweep_temp())
        initialise_task_series({name: queue_for(name) for name in app.tasks if not name.startswith("celery.")})
        model_metrics.initialise_series()  # after prepare_database: the rulesets are synced


def _beat_init(**_: Any) -> None:
    # Sentry in beat too: the Celery integration's cron monitoring (monitor_beat_tasks) opens its
    # check-ins where beat sends the task; without this the workers' half never had a start.
    init_sentry("beat")


def _worker_process_init(**_: Any) -> None:
    # Connections must not cross fork(): drop any engine the parent created.
    get_engine().dispose(close=False)


def _worker_process_shutdown(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())


def _start_metrics_server(**_: Any) -> None:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("worker metrics disabled: PROMETHEUS_MULTIPROC_DIR is not set (start with `librarian worker`)")
        return
    start_metrics_server(
        settings.WORKER_METRICS_PORT,
        [BrokerCollector(get_redis, include_workers=False)],
        addr=settings.WORKER_METRICS_HOST,
    )
    log.info(
        "worker metrics listening", url=f"http://{settings.WORKER_METRICS_HOST}:{settings.WORKER_METRICS_PORT}/metrics"
    )


def _worker_ready(sender: Any = None, **_: Any) -> None:
    for warning in check_broker_durability(get_redis()):
        log.warning("broker durability", problem=warning)
    log.info(
        "worker ready",
        hostname=getattr(sender, "hostname", None),
        incarnation=holders.incarnation(),
        broker=mask_url(settings.broker_url),
        queues=settings.worker_queues,
        concurrency=settings.WORKER_CONCURRENCY,
    )


def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    _heartbeat = Heartbeat(sender.hostname, pool_size=sender.controller.concurrency)
    _heartbeat.start()


def _note_task_received(**_: Any) -> None:
    # task_received fires in the main process, where the heartbeat thread lives.
    if _heartbeat is not None:
        _heartbeat.last_task_at = time.time()


def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


def _start_recovery(sender: Any = None, **_: Any) -> None:
    recovery.start(sender.app, grace=settings.BROKER_RECOVERY_GRACE, dead_after=settings.WORKER_DEAD_AFTER)


def _stop_recovery(**_: Any) -> None:
    recovery.stop()


def _start_pause_listener(**_: Any) -> None:
    pause_registry.start()


def _mark_issued_finished(sender: Any = None, task_id: str | None = None, request: Any = None, **_: Any) -> None:
    """An id the API issued is marked finished once its final state is stored (task_success,
    task_failure and task_revoked come after it), so GET /tasks/{id} answers 410 when the result
    expires. Only messages carrying the issued header: the canary and chain steps cost no round trip.
    A hard-time-limit failure arrives without its headers; the API marks such a task when it reads
    its final state."""
    request = request if request is not None else getattr(sender, "request", None)
    if request is not None and request_header(request, ISSUED_HEADER):
        note_finished(task_id or getattr(request, "id", None))


def _announce_start(task: Any = None, task_id: str | None = None, **_: Any) -> None:
    _announce(task, task_id, "started")


def _announce_end(task: Any = None, task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    _announce(task, task_id, (state or "unknown").lower())


def _announce(task: Any, task_id: str | None, event: str) -> None:
    """Status events on agent:status:{owner} for tasks that have an owner."""
    owner = getattr(task, "owner", None)
    if not owner:
        return
    try:
        publish_status(get_redis(), owner, {"event": event, "task_id": task_id, "task_name": task.name})
    except Exception:  # noqa: BLE001 (status events are best effort: the task goes on)
        log.warning("status event not published", owner=owner, event=event)


_RECEIVERS: tuple[tuple[Any, Any], ...] = (
    (signals.setup_logging, _setup_logging),
    (signals.worker_init, _worker_init),
    (signals.beat_init, _beat_init),
    (signals.worker_process_init, _worker_process_init),
    (signals.worker_process_shutdown, _worker_process_shutdown),
    (signals.worker_ready, _start_metrics_server),
    (signals.worker_ready, _worker_ready),
    (signals.worker_ready, _start_heartbeat),
    (signals.worker_ready, _start_recovery),
    (signals.worker_ready, _start_pause_listener),
    (signals.task_received, _note_task_received),
    (signals.worker_shutdown, _stop_heartbeat),
    (signals.worker_shutdown, _stop_recovery),
    (signals.task_success, _mark_issued_finished),
    (signals.task_failure, _mark_issued_finished),
    (signals.task_revoked, _mark_issued_finished),
    (signals.task_prerun, _announce_start),
    (signals.task_postrun, _announce_end),
)


def connect_all() -> None:
    """Connect every Librarian receiver to Celery's signals; idempotent (dispatch uids).
    Metrics and log lines first, so a task's lines are bound before the status events go out."""
    celery_metrics.connect()
    celery_logging.connect()
    sentry_tasks.connect()
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, dispatch_uid=f"librarian.worker.{receiver.__name__.strip('_')}")
