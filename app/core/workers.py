"""Reading the workers' heartbeats (written by app/worker/heartbeat.py): who is alive, who is stalled.

A key per worker with a TTL, found through a small index (a sorted set of hostnames written in the
same round trip as the key) instead of SCANning the keyspace: a busy deployment holds a result key
and an issued-id key for every task of the last hour, and a SCAN over 100k keys took ~50 ms (over
1M, ~10x that), on every health check and every API scrape. A key is what makes a worker alive:
an index entry whose key has expired is ignored. With an empty index readers fall back to SCAN.
"""

from __future__ import annotations

import json
import time
from typing import Any

from app.broker import keys


def live_workers(client: Any) -> list[dict[str, Any]]:
    """Every worker whose heartbeat key has not expired (index + MGET: two round trips)."""
    names = client.zrange(keys.WORKERS, 0, -1)
    if names:
        found = [keys.WORKER.format(hostname=n.decode() if isinstance(n, bytes) else n) for n in names]
    else:
        found = list(client.scan_iter(match=f"{keys.WORKER_PREFIX}*", count=500))
    if not found:
        return []
    workers = []
    for raw in client.mget(found):
        if raw:
            try:
                workers.append(json.loads(raw))
            except ValueError:
                continue
    return sorted(workers, key=lambda w: str(w.get("hostname", "")))


def oldest_waiting(client: Any, queues: list[str]) -> dict[str, float]:
    """Publish time of the message each queue hands out next (its tail), where Librarian stamped one."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.lindex(queue, -1)
    oldest = {}
    for queue, raw in zip(queues, pipe.execute(), strict=True):
        try:
            oldest[queue] = float(json.loads(raw)["headers"][keys.PUBLISHED_AT_HEADER])
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


def departed_workers(client: Any, live: set[str | None]) -> list[dict[str, Any]]:
    """Workers in the index whose heartbeat key expired (stopped or dead within the index's
    retention): `hostname` and `last_seen`, the time of their last beat."""
    departed = []
    for name, score in client.zrange(keys.WORKERS, 0, -1, withscores=True):
        hostname = name.decode() if isinstance(name, bytes) else str(name)
        if hostname not in live:
            departed.append({"hostname": hostname, "last_seen": float(score)})
    return departed
