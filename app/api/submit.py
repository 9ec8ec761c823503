"""Publishing tasks from the API: fail fast (503) when the broker is down instead of blocking ~20 s."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from app.core.errors import DependencyUnavailable
from app.core.task_registry import forget_issued, record_issued


def submit(
    celery: Celery,
    client: redis.Redis,
    name: str,
    *,
    args: tuple | list | None = None,
    kwargs: dict[str, Any] | None = None,
    task_id: str | None = None,
    **options: Any,
) -> str:
    """Record the id as issued, then publish once without Celery's blocking publish retry."""
    from uuid import uuid4

    task_id = task_id or str(uuid4())
    try:
        record_issued(client, task_id, name)
    except RedisError as exc:
        raise DependencyUnavailable("redis", type(exc).__name__) from exc
    try:
        celery.send_task(name, args=args, kwargs=kwargs, task_id=task_id, retry=False, **options)
    except (KombuOperationalError, RedisError, OSError) as exc:
        try:
            forget_issued(client, task_id)
        except RedisError:
            pass  # the key expires with the result TTL anyway
        raise DependencyUnavailable("redis", type(exc).__name__) from exc
    return task_id
