"""Remembers which task ids Librarian issued, so an unknown id answers 404 instead of Celery's PENDING."""

from __future__ import annotations

import redis

from app.broker import keys
from app.core.config import settings

KEY_PREFIX = keys.ISSUED_PREFIX


def record_issued(client: redis.Redis, task_id: str, task_name: str) -> None:
    client.set(f"{KEY_PREFIX}{task_id}", task_name, ex=settings.RESULT_EXPIRES)


def forget_issued(client: redis.Redis, task_id: str) -> None:
    client.delete(f"{KEY_PREFIX}{task_id}")


def issued_task_name(client: redis.Redis, task_id: str) -> str | None:
    """The task name recorded for this id, or None when Librarian never issued it (or it expired)."""
    name = client.get(f"{KEY_PREFIX}{task_id}")  # the shared pool decodes responses; a raw client does not
    return name.decode() if isinstance(name, bytes) else name
