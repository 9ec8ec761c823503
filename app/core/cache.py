"""A small JSON cache on Redis with a TTL. Best effort: a Redis outage only means a cache miss."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import redis

from app.broker import keys

PREFIX = keys.CACHE_PREFIX


def cache_get(client: redis.Redis, key: str) -> Any | None:
    try:
        raw = client.get(PREFIX + key)
    except redis.RedisError:
        return None
    return json.loads(raw) if raw else None


def cache_set(client: redis.Redis, key: str, value: Any, ttl_seconds: int) -> None:
    with contextlib.suppress(redis.RedisError):
        client.set(PREFIX + key, json.dumps(value), ex=ttl_seconds)


def cache_delete(client: redis.Redis, key: str) -> None:
    with contextlib.suppress(redis.RedisError):
        client.delete(PREFIX + key)


def report_key(part_id: object) -> str:
    """The cache key of a part's validation report."""
    return f"report:{part_id}"
