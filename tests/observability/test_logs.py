"""Logs: every line is JSON, task lines carry their ids, and a request id links HTTP call and task."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.conftest import stack_env
from tests.utils.processes import ROOT, cli

pytestmark = pytest.mark.integration


def non_json_lines(text: str) -> list[str]:
    bad = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    return bad


def test_request_id_follows_the_http_call_into_its_task(http, api, worker):
    request_id = uuid.uuid4().hex
    answer = http.post(
        "/api/v1/tasks/test", params={"message": "trace me", "steps": 2}, headers={"X-Request-ID": request_id}
    )
    assert answer.status_code == 202
    assert answer.headers["x-request-id"] == request_id
    task_id = answer.json()["task_id"]
    deadline = time.monotonic() + 20
    while http.get(f"/api/v1/tasks/{task_id}").json()["status"] != "SUCCESS":
        assert time.monotonic() < deadline, "task did not finish"
        time.sleep(0.05)
    worker.wait_for(
        rf'"task_id": "{task_id}".*"event": "task succeeded"|"event": "task succeeded".*"task_id": "{task_id}"',
        timeout=5,
    )

    task_lines = [line for line in worker.json_lines() if line.get("task_id") == task_id]
    events = [line["event"] for line in task_lines]
    # One line per task outcome at INFO; "task received" and "task started" are DEBUG.
    assert "task succeeded" in events and not {"task received", "task started"} & set(events), events
    for line in task_lines:
        assert line["request_id"] == request_id, line
    succeeded = next(line for line in task_lines if line["event"] == "task succeeded")
    assert succeeded["task_name"] == "librarian.demo.process"
    assert succeeded["queue"] == "default"
    assert succeeded["retries"] == 0
    assert succeeded["runtime_s"] > 0.2  # one step of 0.2 s
    assert 0 <= succeeded["queue_wait_s"] < 20

    api_lines = [line for line in api.json_lines() if line.get("request_id") == request_id]
    assert any(line["event"] == "request" and line["status"] == 202 for line in api_lines), api_lines


def test_failed_task_lines_carry_the_error_and_a_structured_traceback(http, worker, celery):
    result = celery.send_task("librarian.demo.read_storage", args=["../nope"])
    with pytest.raises(Exception, match="outside the storage directory"):  # Celery rebuilds StoragePathError
        result.get(timeout=10)
    line = worker.wait_for(
        rf'\{{[^\n]*"task_id": "{result.id}"[^\n]*"event": "task failed"[^\n]*'
        rf'|\{{[^\n]*"event": "task failed"[^\n]*"task_id": "{result.id}"[^\n]*',
        timeout=5,
    )
    record = json.loads(line.group(0))
    assert record["level"] == "error"
    assert record["error"] == "StoragePathError"
    assert record["exception"][0]["exc_type"] == "StoragePathError"
    assert "locals" not in json.dumps(record["exception"])  # frame locals may hold secrets


def test_every_line_printed_by_worker_and_api_is_json(api, worker, http):
    http.get("/health")
    assert non_json_lines(worker.output()) == []
    assert non_json_lines(api.output()) == []


def test_one_access_line_per_request(http, api):
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    http.get("/health", headers={"X-Request-ID": first})
    http.get("/health", headers={"X-Request-ID": second})
    # uvicorn would log the first request's line when its response ends, before serving the second.
    api.wait_for(rf'"request_id": "{second}"', timeout=5)
    lines = [line for line in api.json_lines() if line.get("request_id") == first]
    assert [line["logger"] for line in lines] == ["librarian.api.access"], lines
    assert not [line for line in api.json_lines() if line.get("logger") == "uvicorn.access"]


@pytest.mark.parametrize("command", ["api", "worker", "beat", "flower"])
def test_a_refused_start_prints_one_line_and_exits_non_zero(command):
    env = stack_env(ENVIRONMENT="production", FLOWER_PASSWORD="changethis")
    result = subprocess.run(cli(command), env=env, cwd=ROOT, capture_output=True, encoding="utf-8", timeout=60)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "FLOWER_PASSWORD" in result.stderr and "placeholder" in result.stderr
    assert "Traceback" not in result.stderr
