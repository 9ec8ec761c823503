"""One Redis connection pool per process, shared by every caller (API requests, health, heartbeats)."""

from __future__ import annotations

import os
import threading

import redis

from app.core.config import settings

_lock = threading.Lock()
_pools: dict[int, redis.ConnectionPool] = {}


def _pool() -> redis.ConnectionPool:
    # Keyed by pid: a pool inherited across fork() must not be shared with the parent.
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        with _lock:
            pool = _pools.get(pid)
            if pool is None:
                pool = redis.ConnectionPool.from_url(
                    settings.redis_url,
                    max_connections=50,
                    socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
                    socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                    health_check_interval=30,
                    decode_responses=True,
                    client_name=f"librarian-{pid}",  # CLIENT LIST shows whose connections these are
                )
                _pools[pid] = pool
    return pool


def get_redis() -> redis.Redis:
    """A client on the shared pool (cheap: no new connection per call)."""
    return redis.Redis(connection_pool=_pool())


def close_pool() -> None:
    pool = _pools.pop(os.getpid(), None)
    if pool is not None:
        pool.disconnect()


_async_pool = None


def get_async_redis():  # type: ignore[no-untyped-def]
    """An asyncio client on one shared pool per process (for streaming endpoints)."""
    import redis.asyncio as aioredis

    global _async_pool
    if _async_pool is None:
        _async_pool = aioredis.ConnectionPool.from_url(
            settings.redis_url,
            max_connections=50,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            decode_responses=True,
        )
    return aioredis.Redis(connection_pool=_async_pool)


async def close_async_pool() -> None:
    global _async_pool
    if _async_pool is not None:
        await _async_pool.disconnect()
        _async_pool = None
