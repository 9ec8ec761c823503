"""Worker heartbeats in Redis: a key per worker with a TTL, so health checks answer in milliseconds.

Celery's own `inspect ping` broadcasts and waits a full second for replies; reading a few keys is
~1 ms (readers: app/core/workers.py). The key expires ~3 intervals after the worker stops writing
it (killed, hung, partitioned). The incarnation beat that the dead-holder recovery goes by is
written to the broker by the recovery thread (app/broker/recovery.py), where the holders live.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import structlog
from celery.worker import state

from app import __version__
from app.broker import holders, keys
from app.core.config import settings
from app.core.redis import get_redis

INDEX_RETENTION_SECONDS = 24 * 3600
INTERVAL_SECONDS = 2.0
TTL_SECONDS = 6

log = structlog.get_logger("librarian.worker.heartbeat")


def heartbeat_payload(
    hostname: str, pool_size: int, last_task_at: float | None, started_at: float | None = None
) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "pid": os.getpid(),
        "incarnation": holders.incarnation(),
        "queues": settings.worker_queues,
        "pool_size": pool_size,
        "active_tasks": len(state.active_requests),  # private: celery.worker.state.active_requests
        "version": __version__,
        "last_task_at": last_task_at,
        "started_at": started_at,
        "timestamp": time.time(),
    }


class Heartbeat:
    """A daemon thread in the worker's main process writing its key every INTERVAL_SECONDS."""

    def __init__(self, hostname: str, pool_size: int, interval: float = INTERVAL_SECONDS) -> None:
        self.hostname = hostname
        self.pool_size = pool_size
        self.interval = interval
        self.last_task_at: float | None = None
        self.started_at = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="librarian-heartbeat", daemon=True)
        self._failing = False

    @property
    def key(self) -> str:
        return keys.WORKER.format(hostname=self.hostname)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # Sent by Celery after a warm shutdown has let running tasks finish: what this worker still
        # held has been acknowledged or put back by kombu, so its incarnation may fall silent.
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        try:
            pipe = get_redis().pipeline(transaction=False)
            pipe.delete(self.key)  # a clean shutdown is not a death
            pipe.zrem(keys.WORKERS, self.hostname)
            pipe.execute()
        except Exception:  # noqa: BLE001 (best effort: the key expires by itself)
            log.debug("heartbeat key not removed at shutdown", hostname=self.hostname)

    def beat_once(self) -> None:
        client = get_redis()
        payload = heartbeat_payload(self.hostname, self.pool_size, self.last_task_at, self.started_at)
        now = time.time()
        pipe = client.pipeline(transaction=False)  # one round trip
        pipe.set(self.key, json.dumps(payload), ex=int(TTL_SECONDS))
        pipe.zadd(keys.WORKERS, {self.hostname: now})
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now - INDEX_RETENTION_SECONDS)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
                if self._failing:
                    log.info("heartbeat restored", hostname=self.hostname)
                self._failing = False
            except Exception as exc:  # noqa: BLE001 (Redis down: keep beating, log once)
                if not self._failing:
                    log.warning("heartbeat failed", hostname=self.hostname, error=type(exc).__name__)
                self._failing = True
            self._stop.wait(self.interval)
