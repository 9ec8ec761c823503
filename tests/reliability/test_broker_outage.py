"""Scenario 3: the broker stopped, then back. Health degrades, submits fail fast, all recover alone."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from tests.reliability.helpers import Stack, own_valkey, report, valkey_url, wait_until

pytestmark = pytest.mark.integration


def test_broker_down_then_back(tmp_root):
    from app.core.embedded import embedded_server

    password = secrets.token_hex(12)
    server = own_valkey("broker-outage", password=password)
    stack = Stack("broker-outage", valkey_url(password, server.port))
    try:
        api, base = stack.start_api("api")
        worker = stack.start_worker("bo")
        first = httpx.post(f"{base}/api/v1/tasks/test", params={"steps": 1}).json()["task_id"]
        wait_until(lambda: httpx.get(f"{base}/api/v1/tasks/{first}").json()["status"] == "SUCCESS", timeout=30)

        port, data_dir = server.port, server.data_dir
        server.stop()
        down_at = time.monotonic()
        health = httpx.get(f"{base}/health", timeout=10)
        redis_check = httpx.get(f"{base}/health-check/redis", timeout=10)
        celery_check = httpx.get(f"{base}/health-check/celery", timeout=10)
        submit_times, submit_codes = [], []
        for _ in range(3):
            t0 = time.monotonic()
            answer = httpx.post(f"{base}/api/v1/tasks/test", params={"steps": 1}, timeout=30)
            submit_times.append(round(time.monotonic() - t0, 2))
            submit_codes.append(answer.status_code)
        refusal = answer.json()
        # Stay down past the heartbeat TTL (6 s): when the worker shows up again it has reconnected.
        time.sleep(max(0.0, down_at + 8 - time.monotonic()))

        server = embedded_server(port=port, data_dir=data_dir, password=password)
        server.start()
        up_at = time.monotonic()
        wait_until(
            lambda: httpx.get(f"{base}/health-check/redis").status_code == 200,
            timeout=20,
            message="the API did not see the broker come back",
        )
        api_back = time.monotonic() - up_at
        wait_until(
            lambda: httpx.get(f"{base}/health-check/celery").status_code == 200,
            timeout=60,
            message="the worker's heartbeat did not come back",
        )
        worker_back = time.monotonic() - up_at
        after = httpx.post(f"{base}/api/v1/tasks/test", params={"steps": 1})
        assert after.status_code == 202, after.text
        task_id = after.json()["task_id"]
        wait_until(
            lambda: httpx.get(f"{base}/api/v1/tasks/{task_id}").json()["status"] == "SUCCESS",
            timeout=60,
            message="a task submitted after the outage never completed",
        )
        completed = time.monotonic() - up_at
        report(
            "broker down then back",
            health=health.json()["status"],
            health_code=health.status_code,
            redis_check=redis_check.status_code,
            celery_check=celery_check.status_code,
            submit_codes=submit_codes,
            submit_s=submit_times,
            outage_s=round(up_at - down_at, 1),
            api_recovered_s=round(api_back, 1),
            worker_recovered_s=round(worker_back, 1),
            new_task_done_s=round(completed, 1),
            worker_restarted=False,
            api_pid_unchanged=api.alive(),
        )
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert health.json()["components"]["redis"]["status"] == "down"
        assert redis_check.status_code == 503 and celery_check.status_code == 503
        assert submit_codes == [503, 503, 503] and max(submit_times) < 2.0
        assert refusal["dependency"] == "redis"
        assert worker.alive() and api.alive()
    finally:
        stack.stop()
        if server.is_running():
            server.stop()
