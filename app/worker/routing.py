"""Queues, routes and the Celery configuration every worker shares, free of side effects.

Importing this module connects no signal and builds no app: the Librarian app
(`app/worker/celery_app.py`) and the benchmarks' bare baseline (`bench/baselines/bare_app.py`) both
start from `base_config()`, so the baseline cannot drift from what production runs.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from kombu import Exchange, Queue

from app.core import sentinel
from app.core.config import QUEUES, Settings

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
            return str(route["queue"])
    return "default"


def task_queues() -> list[Queue]:
    """One direct exchange per queue, bound by its own name: a message goes to exactly one queue."""
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """kombu's and Celery's Sentinel options (master name, how to reach the sentinels) when
    REDIS_URL lists sentinels; nothing otherwise."""
    if settings.redis_sentinel is None:
        return {}
    # private: kombu.SentinelChannel.options
    # private: celery.SentinelBackend.transport_options
    return sentinel.transport_options(
        settings.REDIS_SENTINEL_MASTER,
        settings.REDIS_SENTINEL_PASSWORD.get_secret_value(),
        settings.REDIS_SOCKET_TIMEOUT,
    )


def redbeat_sentinel(settings: Settings) -> dict[str, Any]:
    """RedBeat's own Sentinel form (a `redis-sentinel://` URL plus options naming the sentinels)
    when REDIS_URL lists sentinels; nothing otherwise."""
    where = settings.redis_sentinel
    if where is None:
        return {}
    return {
        "redbeat_redis_url": "redis-sentinel://",
        "redbeat_redis_options": {
            "sentinels": list(where.sentinels),
            "service_name": settings.REDIS_SENTINEL_MASTER,
            "password": where.password,
            "db": where.db,
            "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
            "sentinel_kwargs": settings.redis_sentinel_kwargs,
        },
    }


def base_config(settings: Settings) -> dict[str, Any]:
    """Serialisation, acknowledgement, limits, timeouts, queues and routes: everything but
    Librarian's extensions (transport journal, consumer, task class, logging, beat schedule)."""
    return {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "timezone": "UTC",
        "enable_utc": True,
        "task_track_started": True,
        "task_soft_time_limit": settings.TASK_SOFT_TIME_LIMIT,
        "task_time_limit": settings.TASK_TIME_LIMIT,
        "worker_prefetch_multiplier": 1,
        "worker_max_memory_per_child": settings.WORKER_MAX_MEMORY_PER_CHILD_MB * 1024,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A task whose pool child dies (OOM killer, segfault) is retried like a failure, up to its
        # max_retries, instead of being requeued forever by reject_on_worker_lost.
        "task_retry_on_worker_lost": True,
        "result_expires": settings.RESULT_EXPIRES,
        "result_extended": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.SUBMIT_TIMEOUT,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_transport_options": {
            "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
            "socket_connect_timeout": settings.REDIS_SOCKET_TIMEOUT,
            "socket_timeout": 10,
            "retry_on_timeout": True,
            **sentinel_options(settings),
        },
        "redis_socket_connect_timeout": settings.REDIS_SOCKET_TIMEOUT,
        "redis_socket_timeout": 5,
        "redis_retry_on_timeout": True,
        "result_backend_transport_options": {
            "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
            **sentinel_options(settings),
        },
        "task_queues": task_queues(),
        "task_default_queue": "default",
        "task_routes": ROUTES,
        "task_send_sent_event": False,
        "worker_send_task_events": False,
    }
