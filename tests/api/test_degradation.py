"""Redis stops while the API runs: limits fall back to memory, submits answer 503, nothing 500s."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.conftest import TMP, stack_database_url, stack_env, start_api, start_worker
from tests.utils.processes import free_port, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "degrade-pw"


@pytest.fixture(scope="module")
def own_broker():
    from app.core.embedded import embedded_server

    server = embedded_server(port=free_port(), data_dir=TMP / "valkey-degrade", password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        if server.is_running():
            server.stop()


@pytest.fixture(scope="module")
def stack(own_broker):
    url = f"redis://:{PASSWORD}@127.0.0.1:{own_broker.port}/0"
    env = stack_env(REDIS_URL=url, RATE_LIMIT_UPLOADS="4/minute", DATABASE_URL=stack_database_url(TMP / "degrade.db"))
    api, base = start_api("api-degrade", env=env)
    worker = start_worker("degrade", env=env)
    try:
        yield api, base, worker
    finally:
        worker.stop()
        api.stop()


def upload(base: str, content: bytes) -> httpx.Response:
    return httpx.post(f"{base}/api/v1/parts", files={"file": ("m.3dm", content)}, timeout=10)


def test_redis_outage_degrades_gracefully_and_recovers(stack, own_broker, models):
    api, base, worker = stack
    content = models["valid_part"].read_bytes()
    assert [upload(base, content).status_code for _ in range(4)] == [202] * 4
    limited = upload(base, content)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert "too many requests" in limited.json()["detail"]

    port = own_broker.port
    own_broker.stop()
    answers = {
        "health": httpx.get(f"{base}/health", timeout=10),
        "redis": httpx.get(f"{base}/health-check/redis", timeout=10),
        "celery": httpx.get(f"{base}/health-check/celery", timeout=10),
        "submit": httpx.post(f"{base}/api/v1/tasks/test", timeout=10),
        "status": httpx.get(f"{base}/api/v1/tasks/00000000-0000-0000-0000-000000000000", timeout=10),
        "pause": httpx.post(f"{base}/api/v1/agents/u1/pause", timeout=10),
        "parts": httpx.get(f"{base}/api/v1/parts", timeout=10),
        "metrics": httpx.get(f"{base}/metrics", timeout=10),
    }
    uploads = [upload(base, content) for _ in range(6)]  # the in-memory window starts empty
    assert all(a.status_code < 500 or a.status_code == 503 for a in [*answers.values(), *uploads]), {
        k: (a.status_code, a.text[:200]) for k, a in answers.items()
    }
    assert answers["health"].status_code == 200 and answers["health"].json()["status"] == "degraded"
    assert answers["redis"].status_code == 503
    assert answers["submit"].status_code == 503 and answers["submit"].json()["dependency"] == "redis"
    assert answers["parts"].status_code == 200  # the database still answers
    assert "librarian_broker_up 0.0" in answers["metrics"].text
    assert [u.status_code for u in uploads] == [503] * 4 + [429] * 2
    assert api.output().count("rate limiter falling back to memory") == 1

    from app.core.embedded import embedded_server

    revived = embedded_server(port=port, data_dir=TMP / "valkey-degrade", password=PASSWORD)
    revived.start()
    try:
        task_id = wait_until(
            lambda: (
                (r := httpx.post(f"{base}/api/v1/tasks/test", params={"steps": 1}, timeout=10)).status_code == 202
                and r.json()["task_id"]
            ),
            timeout=20,
            message="the API did not recover",
        )
        # The worker reconnects on its own with kombu's growing retry interval (up to tens of
        # seconds after a long outage on a loaded machine): generous, but no restart allowed.
        try:
            wait_until(
                lambda: httpx.get(f"{base}/api/v1/tasks/{task_id}").json()["status"] == "SUCCESS",
                timeout=90,
                message="the worker did not recover",
            )
        except TimeoutError as exc:
            state = httpx.get(f"{base}/api/v1/tasks/{task_id}").json()
            raise AssertionError(f"{exc}; task {state}; worker output (tail):\n{worker.output()[-8000:]}") from None
        assert worker.alive()
        wait_until(lambda: httpx.get(f"{base}/health").json()["status"] == "ok", timeout=15)
    finally:
        revived.stop()


def test_many_concurrent_requests_use_a_bounded_number_of_connections(stack, own_broker):
    api, base, _ = stack
    if not own_broker.is_running():
        own_broker.start()
    import redis

    admin = redis.Redis(host="127.0.0.1", port=own_broker.port, password=PASSWORD, decode_responses=True)
    wait_until(lambda: httpx.get(f"{base}/health-check/redis").status_code == 200, timeout=20)

    def burst() -> int:
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            codes = list(
                pool.map(lambda _: httpx.get(f"{base}/health-check/redis", timeout=20).status_code, range(300))
            )
        assert codes.count(200) == 300
        return sum(1 for c in admin.client_list() if c.get("name") == f"librarian-{api.pid}")

    first = burst()
    second = burst()
    # 600 requests from 50 threads: connections are reused from one pool bounded at 50, never one
    # per request (how many the two bursts open depends on their overlap, so no tighter bound).
    assert 1 <= first <= 50
    assert 1 <= second <= 50
