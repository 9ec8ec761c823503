"""Health endpoints against real processes: heartbeats, a killed worker, a stopped broker."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import TMP, stack_env, start_api, start_worker
from tests.utils.processes import free_port, wait_until

pytestmark = pytest.mark.integration


def assert_check_shape(body: dict, status: str) -> None:
    """Seed 002's shape: status healthy/unhealthy and an ISO 8601 UTC timestamp of now."""
    assert body["status"] == status, body
    stamp = datetime.fromisoformat(body["timestamp"])
    assert stamp.utcoffset() == timedelta(0), body["timestamp"]
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=30), body["timestamp"]


@pytest.fixture(scope="module")
def own_db_url(broker):
    return broker.db_url(3)


def test_celery_health_follows_a_worker_through_sigkill_and_restart(own_db_url):
    env = stack_env(REDIS_URL=own_db_url)
    api, base = start_api("api-health", env=env)
    worker = start_worker("hb1", env=env)
    try:
        answer = wait_until(
            lambda: (r := httpx.get(f"{base}/health-check/celery")).status_code == 200 and r, timeout=10
        )
        body = answer.json()
        assert_check_shape(body, "healthy")
        assert body["count"] == 1
        (info,) = body["workers"]
        assert info["hostname"].startswith("hb1@")
        assert info["pool_size"] == 2
        assert set(info["queues"]) == {"default", "validation", "pipeline", "maintenance"}

        worker.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: httpx.get(f"{base}/health-check/celery").status_code == 503,
            timeout=10,
            message="a SIGKILLed worker was not reported dead within 10 s",
        )
        dead = httpx.get(f"{base}/health-check/celery").json()
        assert_check_shape(dead, "unhealthy")
        assert "heartbeat" in dead["error"]
        assert time.monotonic() - killed_at < 10
        health = httpx.get(f"{base}/health").json()
        assert health["status"] == "degraded" and health["components"]["workers"]["status"] == "down"

        worker.stop()
        worker = start_worker("hb2", env=env)
        wait_until(lambda: httpx.get(f"{base}/health-check/celery").status_code == 200, timeout=10)
        deep = httpx.get(f"{base}/health-check/celery", params={"deep": "true"}).json()
        assert_check_shape(deep, "healthy")
        assert any(name.startswith("hb2@") for name in deep["ping_replies"])
    finally:
        worker.stop()
        api.stop()


def test_redis_health_reports_a_stopped_server_and_recovers(tmp_root):
    from app.core.embedded import embedded_server

    password = "sup3r-secret-pw"
    server = embedded_server(port=free_port(), data_dir=TMP / "valkey-health", password=password)
    server.start()
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    api, base = start_api("api-redis-health", env=stack_env(REDIS_URL=url))
    try:
        ok = httpx.get(f"{base}/health-check/redis")
        assert ok.status_code == 200
        body = ok.json()
        assert_check_shape(body, "healthy")
        assert body["version"] and body["used_memory_bytes"] > 0 and body["latency_ms"] >= 0
        assert body["url"] == f"redis://:***@127.0.0.1:{server.port}/0"

        port = server.port
        server.stop()
        started = time.monotonic()
        down = httpx.get(f"{base}/health-check/redis", timeout=10)
        assert down.status_code == 503
        assert time.monotonic() - started < 3
        assert_check_shape(down.json(), "unhealthy")
        assert down.json()["error"] and down.json()["url"] == f"redis://:***@127.0.0.1:{port}/0"
        overall = httpx.get(f"{base}/health", timeout=10)
        assert overall.status_code == 200 and overall.json()["status"] == "degraded"
        submit = httpx.post(f"{base}/api/v1/tasks/test", timeout=10)
        assert submit.status_code == 503

        server = embedded_server(port=port, data_dir=TMP / "valkey-health", password=password)
        server.start()
        wait_until(
            lambda: httpx.get(f"{base}/health-check/redis").status_code == 200,
            timeout=10,
            message="the API did not recover after the broker came back",
        )
        everything = [httpx.get(f"{base}{p}").text for p in ("/health", "/health-check/redis", "/health-check/celery")]
        assert not any(password in text for text in everything)
        assert password not in api.output()
    finally:
        api.stop()
        if server.is_running():
            server.stop()
