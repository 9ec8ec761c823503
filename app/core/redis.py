"""One Redis connection pool per process, shared by every caller (API requests, health, heartbeats).

With a sentinel:// REDIS_URL the pools are redis-py's Sentinel pools: each new connection asks the
sentinels for the current primary, and a connection error or a primary turned replica makes the
pool drop its idle connections, so a failover is followed without a restart.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel
import redis.sentinel

from app.core.config import settings

# redis-py's sentinel modules have no annotations: called through Any, typed at our edges.
_sync_sentinel: Any = redis.sentinel
_async_sentinel: Any = redis.asyncio.sentinel

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
                options: dict[str, Any] = {
                    "max_connections": 50,
                    "socket_connect_timeout": settings.REDIS_SOCKET_TIMEOUT,
                    "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
                    "health_check_interval": 30,
                    "decode_responses": True,
                    "client_name": f"librarian-{pid}",  # CLIENT LIST shows whose connections these are
                }
                if settings.redis_sentinel is not None:
                    pool = _sync_sentinel.SentinelConnectionPool(
                        settings.REDIS_SENTINEL_MASTER, sentinel_manager(), **options, **_primary_auth()
                    )
                else:
                    pool = redis.ConnectionPool.from_url(settings.redis_url, **options)
                _pools[pid] = pool
    return pool


def _primary_auth() -> dict[str, Any]:
    where = settings.redis_sentinel
    assert where is not None
    return {"password": where.password, "username": where.username, "db": where.db}


_managers: dict[int, Any] = {}


def sentinel_manager() -> Any:
    """The process's redis-py Sentinel (its connections to the sentinels), sentinel mode only."""
    pid = os.getpid()
    manager = _managers.get(pid)
    if manager is None:
        where = settings.redis_sentinel
        assert where is not None, "REDIS_URL is not a sentinel:// URL"
        manager = _managers.setdefault(
            pid,
            _sync_sentinel.Sentinel(
                list(where.sentinels),
                sentinel_kwargs=settings.redis_sentinel_kwargs,
            ),
        )
    return manager


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
    _managers.pop(os.getpid(), None)
    pool = _pools.pop(os.getpid(), None)
    if pool is not None:
        pool.disconnect()


_async_pool: aioredis.ConnectionPool | None = None


def get_async_redis() -> aioredis.Redis:
    """An asyncio client on one shared pool per process (for streaming endpoints)."""
    global _async_pool
    if _async_pool is None:
        options: dict[str, Any] = {
            "max_connections": 50,
            "socket_connect_timeout": settings.REDIS_SOCKET_TIMEOUT,
            "decode_responses": True,
        }
        where = settings.redis_sentinel
        if where is not None:
            manager = _async_sentinel.Sentinel(
                list(where.sentinels),
                sentinel_kwargs=settings.redis_sentinel_kwargs,
            )
            _async_pool = _async_sentinel.SentinelConnectionPool(
                settings.REDIS_SENTINEL_MASTER, manager, **options, **_primary_auth()
            )
        else:
            _async_pool = aioredis.ConnectionPool.from_url(settings.redis_url, **options)
    return aioredis.Redis(connection_pool=_async_pool)


async def close_async_pool() -> None:
    global _async_pool
    if _async_pool is not None:
        await _async_pool.disconnect()
        _async_pool = None


def sentinel_status() -> dict[str, Any]:
    """Sentinel mode's topology, as the sentinels see it: the primary, the live replicas, and how
    many sentinels answer against the quorum a failover needs. Addresses only, never a password."""
    manager = sentinel_manager()
    name = settings.REDIS_SENTINEL_MASTER
    host, port = manager.discover_master(name)  # MasterNotFoundError (a ConnectionError) when none
    replicas = [f"{h}:{p}" for h, p in manager.discover_slaves(name)]
    reachable, quorum, known = 0, None, None
    for node in manager.sentinels:
        try:
            state = node.sentinel_master(name)
        except redis.RedisError:
            continue
        reachable += 1
        quorum = int(state["quorum"])
        known = max(known or 0, int(state["num-other-sentinels"]) + 1)
    status: dict[str, Any] = {
        "master_name": name,
        "primary": f"{host}:{port}",
        "replicas": sorted(replicas),
        "sentinels": {"configured": len(manager.sentinels), "reachable": reachable, "known": known, "quorum": quorum},
    }
    if quorum is not None and reachable < quorum:
        status["warning"] = "fewer sentinels answer than the quorum: a failover could not be agreed"
    return status
