"""The Celery application: JSON only, late acks, time limits, named queues."""

from __future__ import annotations

import os
import ssl
from fnmatch import fnmatchcase

from celery import Celery
from celery.app.amqp import AMQP
from kombu import Exchange, Queue

from app.core.config import QUEUES, settings
from app.worker.transport import Connection, transport_for

TASK_MODULES = [
    "app.worker.tasks.diagnostics",
    "app.worker.tasks.validation",
    "app.worker.tasks.maintenance",
    "app.worker.tasks.pipeline",
]

ROUTES = {
    "librarian.validation.*": {"queue": "validation"},
    "librarian.pipeline.*": {"queue": "pipeline"},
    "librarian.maintenance.*": {"queue": "maintenance"},
    "librarian.*": {"queue": "default"},
}


def queue_for(task_name: str) -> str:
    """The queue a task name routes to (first matching pattern of ROUTES)."""
    for pattern, route in ROUTES.items():
        if fnmatchcase(task_name, pattern):
            return route["queue"]
    return "default"


class LibrarianAMQP(AMQP):
    """Celery's AMQP layer with our kombu Connection, which names our transports by URL scheme
    (app/worker/transport.py): the app, its worker, `celery inspect` and Flower all connect through it."""

    Connection = Connection


def create_celery_app() -> Celery:
    app = Celery(
        "librarian",
        amqp=LibrarianAMQP,
        broker=settings.broker_url,
        backend=settings.result_backend,
        task_cls="app.worker.base:LibrarianTask",
    )
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        timezone="UTC",
        enable_utc=True,
        task_track_started=True,
        task_soft_time_limit=settings.TASK_SOFT_TIME_LIMIT,
        task_time_limit=settings.TASK_TIME_LIMIT,
        worker_prefetch_multiplier=1,
        worker_max_memory_per_child=settings.WORKER_MAX_MEMORY_PER_CHILD_MB * 1024,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task whose pool child dies (OOM killer, segfault) is retried like a failure, up to its
        # max_retries, instead of being requeued forever by reject_on_worker_lost.
        task_retry_on_worker_lost=True,
        result_expires=settings.RESULT_EXPIRES,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        # kombu's Redis transport plus a publish journal, so a message is not lost with a worker
        # killed between taking it and recording it as unacknowledged, and a fix for a worker
        # dying on a broker outage (app/worker/transport.py). By import path, not class: the name
        # goes into `inspect stats` replies, which must stay JSON.
        broker_transport=transport_for(settings.broker_url),
        broker_connection_timeout=settings.SUBMIT_TIMEOUT,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={
            "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
            "socket_connect_timeout": settings.REDIS_SOCKET_TIMEOUT,
            "socket_timeout": 10,
            "retry_on_timeout": True,
            "journal_queues": tuple(QUEUES) if settings.BROKER_RECOVERY_GRACE > 0 else (),
        },
        redis_socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        redis_socket_timeout=5,
        redis_retry_on_timeout=True,
        result_backend_transport_options={"visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT},
        # One direct exchange per queue, bound by its own name: a message goes to exactly one queue.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="default",
        task_routes=ROUTES,
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_consumer="app.worker.consumer:LibrarianConsumer",
        beat_schedule={
            "canary-health-check": {
                "task": "librarian.maintenance.health_check",
                "schedule": 60.0,
                "options": {"expires": 55},
            },
            "sweep-stuck-parts": {
                "task": "librarian.maintenance.sweep_stuck_parts",
                "schedule": 300.0,
                "options": {"expires": 290},
            },
        },
        beat_schedule_filename=str(settings.VAR_DIR / "celerybeat-schedule"),
    )
    app.conf.imports = TASK_MODULES
    # TLS for rediss:// URLs, certificates verified against the system's CAs. kombu turns TLS on
    # by itself only for its own `rediss` transport name (and then without verification); ours
    # goes by import path, so without this a rediss:// broker was spoken to in plain TCP.
    # Celery's Redis result backend refuses a rediss:// URL without these options.
    verified = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.broker_url.startswith("rediss://"):
        app.conf.broker_use_ssl = verified
    if settings.result_backend.startswith("rediss://"):
        app.conf.redis_backend_use_ssl = verified
    return app


celery_app = create_celery_app()

if os.environ.get("LIBRARIAN_PROCESS") == "worker":
    # Configure JSON logging before Celery's start-up checks warn (they run before setup_logging).
    from app.observability.logging import configure_logging

    configure_logging("worker")

# Signal handlers (logging, start-up checks, metrics) connect on import.
from app.observability import celery_logging, celery_metrics  # noqa: E402,F401
from app.worker import signals  # noqa: E402,F401
