"""A live worker that takes nothing while its queue waits is reported stalled, not healthy.

The stuck consumer itself cannot be produced on demand (a Celery/kombu reconnect bug), so the
test writes what such a worker leaves behind: a fresh heartbeat with free pool slots and an old
`last_task_at`, and a message that has waited in its queue for longer than the stall window.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import redis

from app.broker.keys import WORKER_PREFIX as KEY_PREFIX
from app.broker.keys import WORKERS as INDEX_KEY
from app.core.workers import mark_stalled
from app.observability.celery_metrics import PUBLISHED_AT
from tests.conftest import stack_env, start_api

pytestmark = pytest.mark.integration


def heartbeat(
    name: str, *, queues: list[str], last_task_at: float | None, started_at: float, active: int = 0, pool: int = 2
) -> dict:
    return {
        "hostname": name,
        "pid": 1,
        "queues": queues,
        "pool_size": pool,
        "active_tasks": active,
        "last_task_at": last_task_at,
        "started_at": started_at,
        "timestamp": time.time(),
    }


def waiting_message(client: redis.Redis, queue: str, published_at: float) -> None:
    client.lpush(
        queue,
        json.dumps(
            {
                "body": "",
                "headers": {"task": "librarian.x", PUBLISHED_AT: published_at},
                "properties": {"delivery_tag": "t"},
            }
        ),
    )


@pytest.fixture
def client(broker):
    return redis.Redis.from_url(broker.db_url(3), decode_responses=True)


def test_mark_stalled_needs_free_slots_an_idle_worker_and_an_old_message(client):
    now = time.time()
    waiting_message(client, "validation", now - 300)
    waiting_message(client, "default", now - 5)
    workers = [
        heartbeat("stuck", queues=["validation"], last_task_at=now - 600, started_at=now - 900),
        heartbeat("busy", queues=["validation"], last_task_at=now - 600, started_at=now - 900, active=2),
        heartbeat("just-started", queues=["validation"], last_task_at=None, started_at=now - 10),
        heartbeat("recent-task", queues=["validation"], last_task_at=now - 30, started_at=now - 900),
        heartbeat("fresh-queue-only", queues=["default"], last_task_at=now - 600, started_at=now - 900),
    ]
    mark_stalled(client, workers, stall_seconds=120)
    assert {w["hostname"]: w["stalled"] for w in workers} == {
        "stuck": True,
        "busy": False,
        "just-started": False,
        "recent-task": False,
        "fresh-queue-only": False,
    }
    assert workers[0]["stalled_queues"] == ["validation"]


def test_celery_health_is_503_when_every_live_worker_is_stalled(broker, client):
    url = broker.db_url(3)
    api, base = start_api("api-stall", env=stack_env(REDIS_URL=url, WORKER_STALL_SECONDS="60"))
    try:
        now = time.time()
        client.set(
            f"{KEY_PREFIX}w1",
            json.dumps(heartbeat("w1", queues=["default"], last_task_at=now - 600, started_at=now - 900)),
            ex=30,
        )
        client.zadd(INDEX_KEY, {"w1": now})
        healthy = httpx.get(f"{base}/health-check/celery").json()
        assert healthy["status"] == "healthy" and healthy["workers"][0]["stalled"] is False  # nothing waits

        waiting_message(client, "default", now - 90)
        stalled = httpx.get(f"{base}/health-check/celery")
        assert stalled.status_code == 503
        assert stalled.json()["workers"][0]["stalled_queues"] == ["default"]
        assert "stalled" in stalled.json()["error"]
        assert httpx.get(f"{base}/health").json()["status"] == "degraded"
    finally:
        api.stop()
