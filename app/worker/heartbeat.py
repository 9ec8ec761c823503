"""Worker heartbeats in Redis: a key per worker with a TTL, so health checks answer in milliseconds.

Celery's own `inspect ping` broadcasts and waits a full second for replies; reading a few keys is
~1 ms. The key expires ~3 intervals after the worker stops writing it (killed, hung, partitioned).

Readers find the keys through a small index, a sorted set of hostnames written in the same round
trip as the key, instead of SCANning the whole keyspace: a busy deployment holds a result key and
an issued-id key for every task of the last hour, and a SCAN over 100k keys took ~50 ms (over 1M,
~10x that), on every health check and every API scrape. A key is still what makes a worker alive:
an index entry whose key has expired is ignored, and entries not refreshed for a day are dropped
by the writers. With an empty index (workers older than it) readers fall back to SCAN.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import structlog

from app.core.config import settings

KEY_PREFIX = "librarian:worker:"
INDEX_KEY = "librarian:workers"  # sorted set: hostname -> time of its last beat
INDEX_RETENTION_SECONDS = 24 * 3600
INTERVAL_SECONDS = 2.0
TTL_SECONDS = 6

log = structlog.get_logger("librarian.worker.heartbeat")


def heartbeat_payload(hostname: str, pool_size: int, last_task_at: float | None) -> dict[str, Any]:
    from celery.worker import state

    from app import __version__

    return {
        "hostname": hostname,
        "pid": os.getpid(),
        "queues": settings.worker_queues,
        "pool_size": pool_size,
        "active_tasks": len(state.active_requests),
        "version": __version__,
        "last_task_at": last_task_at,
        "timestamp": time.time(),
    }


class Heartbeat:
    """A daemon thread in the worker's main process writing its key every INTERVAL_SECONDS."""

    def __init__(self, hostname: str, pool_size: int, interval: float = INTERVAL_SECONDS) -> None:
        self.hostname = hostname
        self.pool_size = pool_size
        self.interval = interval
        self.last_task_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="librarian-heartbeat", daemon=True)
        self._failing = False

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{self.hostname}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        from app.core.redis import get_redis

        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        try:
            pipe = get_redis().pipeline(transaction=False)
            pipe.delete(self.key)  # a clean shutdown is not a death
            pipe.zrem(INDEX_KEY, self.hostname)
            pipe.execute()
        except Exception:
            pass

    def beat_once(self) -> None:
        from app.core.redis import get_redis

        payload = heartbeat_payload(self.hostname, self.pool_size, self.last_task_at)
        now = time.time()
        pipe = get_redis().pipeline(transaction=False)  # one round trip, as a single SET was
        pipe.set(self.key, json.dumps(payload), ex=int(TTL_SECONDS))
        pipe.zadd(INDEX_KEY, {self.hostname: now})
        pipe.zremrangebyscore(INDEX_KEY, "-inf", now - INDEX_RETENTION_SECONDS)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
                if self._failing:
                    log.info("heartbeat restored", hostname=self.hostname)
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("heartbeat failed", hostname=self.hostname, error=type(exc).__name__)
                self._failing = True
            self._stop.wait(self.interval)


def live_workers(client: Any) -> list[dict[str, Any]]:
    """Every worker whose heartbeat key has not expired (index + MGET: two round trips)."""
    names = client.zrange(INDEX_KEY, 0, -1)
    if names:
        keys = [f"{KEY_PREFIX}{n.decode() if isinstance(n, bytes) else n}" for n in names]
    else:
        keys = list(client.scan_iter(match=f"{KEY_PREFIX}*", count=500))
    if not keys:
        return []
    workers = []
    for raw in client.mget(keys):
        if raw:
            try:
                workers.append(json.loads(raw))
            except ValueError:
                continue
    return sorted(workers, key=lambda w: w.get("hostname", ""))
