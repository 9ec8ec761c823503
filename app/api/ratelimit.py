"""Sliding-window rate limits per client (the `limits` library's moving window on Redis).

A client is the token's owner when the request has one (API_TOKENS), otherwise its address. The
address is the direct peer's, or the one X-Forwarded-For names when that peer is one of
FORWARDED_ALLOW_IPS: uvicorn's proxy-headers middleware rewrites it before the app sees it
(`librarian api` passes the setting as uvicorn's --forwarded-allow-ips). Each limiter (uploads,
batches) has its own budget.

When Redis is unreachable the limiter falls back to an in-process window and the API keeps
serving (graceful degradation); the switch is logged once each way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import HTTPException, Request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisSentinelStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from app.api.deps import OwnerDep
from app.core.config import settings

log = structlog.get_logger("librarian.api.ratelimit")


def redis_storage() -> Storage:
    """The limits library's Redis storage on REDIS_URL: its Sentinel storage (`redis+sentinel://`,
    primary only) when REDIS_URL lists sentinels."""
    timeout = settings.REDIS_SOCKET_TIMEOUT
    where = settings.redis_sentinel
    if where is None:
        return RedisStorage(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    options: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout, "db": where.db}
    options.update({k: v for k, v in (("password", where.password), ("username", where.username)) if v})
    hosts = ",".join(f"{host}:{port}" for host, port in where.sentinels)
    return RedisSentinelStorage(
        f"redis+sentinel://{hosts}",
        service_name=settings.REDIS_SENTINEL_MASTER,
        use_replicas=False,  # a window read from a lagging replica would let a burst through
        sentinel_kwargs=settings.redis_sentinel_kwargs,
        **options,
    )


class RateLimiter:
    def __init__(self, name: str, limit: str) -> None:
        self.name = name
        self.item: RateLimitItem = parse(limit)
        self._redis: MovingWindowRateLimiter | None = None
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self.degraded = False

    def _primary(self) -> MovingWindowRateLimiter:
        if self._redis is None:
            self._redis = MovingWindowRateLimiter(redis_storage())
        return self._redis

    def hit(self, client_key: str) -> tuple[bool, int]:
        """(allowed, seconds until a slot frees) for one request of `client_key`."""
        try:
            limiter = self._primary()
            allowed = limiter.hit(self.item, self.name, client_key)
            if self.degraded:
                log.info("rate limiter back on redis", limiter=self.name)
                self.degraded = False
        except Exception as exc:  # noqa: BLE001 (whatever the storage raises, limit in memory instead)
            if not self.degraded:
                log.warning("rate limiter falling back to memory", limiter=self.name, error=type(exc).__name__)
                self.degraded = True
            limiter = self._memory
            allowed = limiter.hit(self.item, self.name, client_key)
        if allowed:
            return True, 0
        try:
            reset_at = limiter.get_window_stats(self.item, self.name, client_key).reset_time
        except Exception:  # noqa: BLE001 (a retry hint only: the full window is a safe answer)
            reset_at = time.time() + self.item.get_expiry()
        return False, max(1, math.ceil(reset_at - time.time()))


def client_key(request: Request, owner: str | None) -> str:
    if owner is not None:
        return f"owner:{owner}"
    return f"ip:{request.client.host if request.client else 'unknown'}"


def enforce(limiter: RateLimiter, request: Request, owner: str | None) -> None:
    """Count one request against `limiter`, keyed by the token's owner (else the address); 429 over it."""
    allowed, retry_after = limiter.hit(client_key(request, owner))
    if not allowed:
        raise HTTPException(
            429,
            detail=f"too many requests: limit is {limiter.item}, retry in {retry_after}s",
            headers={"Retry-After": str(retry_after)},
        )


def rate_limit(limiter: RateLimiter) -> Callable[..., None]:
    def dependency(request: Request, owner: OwnerDep) -> None:
        enforce(limiter, request, owner)

    return dependency


upload_limiter = RateLimiter("uploads", settings.RATE_LIMIT_UPLOADS)
batch_limiter = RateLimiter("batches", settings.RATE_LIMIT_BATCHES)
