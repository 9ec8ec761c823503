"""With the broker unreachable, submits answer 503 JSON within 2 s, never 500 and never a 19 s hang."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.conftest import stack_env, start_api
from tests.utils.processes import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_without_broker():
    dead = f"redis://:secret-password@127.0.0.1:{free_port()}/0"
    process, base = start_api("api-no-broker", env=stack_env(REDIS_URL=dead))
    try:
        yield process, base
    finally:
        process.stop()


def test_submit_answers_503_json_within_two_seconds(api_without_broker):
    _, base = api_without_broker
    for _ in range(3):
        started = time.monotonic()
        answer = httpx.post(f"{base}/api/v1/tasks/test", params={"message": "Hello"}, timeout=30)
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json()["dependency"] == "redis"
        assert elapsed < 2.0, f"took {elapsed:.2f}s"


def test_status_of_a_task_answers_503_not_500(api_without_broker):
    _, base = api_without_broker
    answer = httpx.get(f"{base}/api/v1/tasks/{uuid.uuid4()}", timeout=10)
    assert answer.status_code == 503
    assert answer.json()["dependency"] == "redis"


def test_no_password_in_answers_or_logs(api_without_broker):
    process, base = api_without_broker
    for path in ("/health", "/health-check/redis", "/health-check/celery"):
        body = httpx.get(f"{base}{path}", timeout=10).text
        assert "secret-password" not in body
    assert "secret-password" not in process.output()
