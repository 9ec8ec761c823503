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


def heartbeat_payload(
    hostname: str, pool_size: int, last_task_at: float | None, started_at: float | None = None
) -> dict[str, Any]:
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

        payload = heartbeat_payload(self.hostname, self.pool_size, self.last_task_at, self.started_at)
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


def oldest_waiting(client: Any, queues: list[str]) -> dict[str, float]:
    """Publish time of the message each queue hands out next (its tail), where Librarian stamped one."""
    from app.observability.celery_metrics import PUBLISHED_AT

    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.lindex(queue, -1)
    oldest = {}
    for queue, raw in zip(queues, pipe.execute()):
        try:
            oldest[queue] = float(json.loads(raw)["headers"][PUBLISHED_AT])
        except (TypeError, ValueError, KeyError):
            continue  # empty queue, or a message from a producer that does not stamp it
    return oldest


def mark_stalled(client: Any, workers: list[dict[str, Any]], stall_seconds: float) -> None:
    """Set `stalled` on each live worker that has free pool slots and has taken nothing for
    `stall_seconds` while a message has waited longer than that in one of its queues.

    Its heartbeat alone cannot tell: Celery workers have been seen to reconnect after a broker
    outage and then never consume again while staying otherwise healthy (celery/celery#10205,
    #10302). Restarting such a worker is the remedy (docs/runbook.md, LibrarianQueueBacklog).
    """
    now = time.time()
    queues = sorted({q for w in workers for q in w.get("queues") or []})
    oldest = oldest_waiting(client, queues) if queues else {}
    for worker in workers:
        idle_since = max(worker.get("last_task_at") or 0.0, worker.get("started_at") or now)
        waiting = [q for q in worker.get("queues") or [] if q in oldest and now - oldest[q] > stall_seconds]
        worker["stalled"] = bool(
            waiting
            and now - idle_since > stall_seconds
            and (worker.get("active_tasks") or 0) < (worker.get("pool_size") or 1)
        )
        if worker["stalled"]:
            worker["stalled_queues"] = waiting
