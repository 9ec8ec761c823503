"""The Celery application: the shared configuration (app/worker/routing.py) plus Librarian's
extensions: the broker transport (app/broker/), the hardened consumer, the pausable task class,
logging, the beat schedule and the signal receivers (connected here, once)."""

from __future__ import annotations

import os
import ssl

from celery import Celery
from celery.app.amqp import AMQP

from app.broker import keys
from app.broker.transport import Connection, transport_for
from app.core.config import QUEUES, settings
from app.observability.logging import configure_logging
from app.worker.routing import TASK_MODULES, base_config, redbeat_sentinel
from app.worker.signals import connect_all


class LibrarianAMQP(AMQP):
    """Celery's AMQP layer with our kombu Connection, which names our transports by URL scheme
    (app/broker/transport.py): the app, its worker, `celery inspect` and Flower all connect through it."""

    Connection = Connection


def create_celery_app() -> Celery:
    if os.environ.get("LIBRARIAN_PROCESS") == "worker":
        # JSON logging before Celery's start-up checks warn (they run before setup_logging).
        configure_logging("worker")
    app = Celery(
        "librarian",
        amqp=LibrarianAMQP,
        broker=settings.broker_url,
        backend=settings.result_backend,
        task_cls="app.worker.base:LibrarianTask",
    )
    config = base_config(settings)
    recovering = settings.BROKER_RECOVERY_GRACE > 0 or settings.WORKER_DEAD_AFTER > 0
    api = os.environ.get("LIBRARIAN_PROCESS") == "api"
    config["broker_transport_options"] = {
        **config["broker_transport_options"],
        # The journal and message holders cover the task queues (app/broker/): off, the transport
        # behaves as kombu's own.
        "journal_queues": tuple(QUEUES) if recovering else (),
        # Acknowledged means kept: the API's publishes (a 202) wait for REDIS_PUBLISH_WAIT_REPLICAS
        # replicas; a worker's own publishes (retries, chain steps) do not wait.
        "publish_wait_replicas": settings.REDIS_PUBLISH_WAIT_REPLICAS if api else 0,
        "publish_wait_ms": settings.REDIS_PUBLISH_WAIT_MS,
    }
    config.update(
        # kombu's Redis transport with a publish journal, message holders and a fix for a worker
        # dying on a broker outage (app/broker/transport.py). By import path, not class: the name
        # goes into `inspect stats` replies, which must stay JSON.
        broker_transport=transport_for(settings.broker_url),
        worker_hijack_root_logger=False,
        worker_consumer="app.worker.consumer:LibrarianConsumer",
        beat_schedule={
            "canary-health-check": {
                "task": "librarian.maintenance.health_check",
                "schedule": settings.CANARY_INTERVAL,
                "options": {"expires": settings.CANARY_INTERVAL * 0.9},
            },
            "sweep-stuck-parts": {
                "task": "librarian.maintenance.sweep_stuck_parts",
                "schedule": 300.0,
                "options": {"expires": 290},
            },
        },
        # Exactly one beat schedules, on any number of hosts: RedBeat keeps each entry's last run
        # and a leader lock in Redis. A second beat waits for the lock as a standby and takes over
        # BEAT_LOCK_TIMEOUT after the leader stops renewing it (renewed every loop, a quarter of it).
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=settings.broker_url,
        redbeat_redis_options={},  # set, so RedBeat does not fall back to the transport's options
        redbeat_key_prefix=keys.BEAT_PREFIX,
        redbeat_lock_key=keys.BEAT_LOCK,
        redbeat_lock_timeout=settings.BEAT_LOCK_TIMEOUT,
        beat_max_loop_interval=max(1, settings.BEAT_LOCK_TIMEOUT // 4),
    )
    config.update(redbeat_sentinel(settings))  # sentinel:// REDIS_URL: RedBeat asks the sentinels too
    app.conf.update(config)
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
    if settings.broker_url.startswith("rediss://"):
        app.conf.redbeat_redis_use_ssl = verified
    connect_all()
    return app


celery_app = create_celery_app()
