"""One Redis connection pool per process, shared by every caller (API requests, health, heartbeats)."""

from __future__ import annotations

import os
import threading

import redis
import redis.asyncio as aioredis

from app.core.config import settings

_lock = threading.Lock()
_pools: dict[int, redis.ConnectionPool] = {}
_clients: dict[int, redis.Redis] = {}


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
    """The process's client on the shared pool.

    One client per process, not one per call: building a redis.Redis copies its table of response
    callbacks (tens of microseconds, on every API request), and a client is safe to share between
    threads (it takes a connection from the pool per command; pipelines and pub/sub objects, which
    are not, are made per call by the callers).
    """
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        client = _clients.setdefault(pid, redis.Redis(connection_pool=_pool()))
    return client


def close_pool() -> None:
    _clients.pop(os.getpid(), None)
    pool = _pools.pop(os.getpid(), None)
    if pool is not None:
        pool.disconnect()


_async_pool: aioredis.ConnectionPool | None = None


def get_async_redis() -> aioredis.Redis:
    """An asyncio client on one shared pool per process (for streaming endpoints)."""
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
