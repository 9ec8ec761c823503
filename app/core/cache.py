"""A small JSON cache on Redis with a TTL. Best effort: a Redis outage only means a cache miss."""

from __future__ import annotations

import json
from typing import Any

import redis

PREFIX = "librarian:cache:"


def cache_get(client: redis.Redis, key: str) -> Any | None:
    try:
        raw = client.get(PREFIX + key)
    except redis.RedisError:
        return None
    return json.loads(raw) if raw else None


def cache_set(client: redis.Redis, key: str, value: Any, ttl_seconds: int) -> None:
    try:
        client.set(PREFIX + key, json.dumps(value), ex=ttl_seconds)
    except redis.RedisError:
        pass


def cache_delete(client: redis.Redis, key: str) -> None:
    try:
        client.delete(PREFIX + key)
    except redis.RedisError:
        pass


def report_key(part_id: object) -> str:
    """The cache key of a part's validation report."""
    return f"report:{part_id}"
