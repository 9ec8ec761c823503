"""`librarian up` with LOG_FORMAT=json: every process writes JSON lines naming itself.

One full run (embedded Valkey, api, worker, beat, Flower), a demo task and a batch holding a file
that is not a Rhino model under a .3dm name; then the combined output is read as a whole.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import TMP, stack_env
from tests.fixtures.models_3dm import not_3dm, valid_part
from tests.utils.processes import ManagedProcess, cli, free_port, wait_http, wait_until

pytestmark = pytest.mark.integration

SERVICES = {"supervisor", "migrate", "redis", "api", "worker", "beat", "flower"}
# Loggers only one process uses: a line from one of them must name that process.
LOGGER_SERVICE = {
    "librarian.supervisor": "supervisor",
    "librarian.migrate": "migrate",
    "librarian.redis": "redis",
    "librarian.api": "api",
    "uvicorn": "api",
    "librarian.task": "worker",
    "librarian.worker": "worker",
    "librarian.pipeline": "worker",
    "celery.worker": "worker",
    "celery.apps.worker": "worker",
    "celery.beat": "beat",
    "flower": "flower",
    "tornado": "flower",
}
BANNER_START = "Librarian is starting"


def expected_service(logger: str) -> str | None:
    for prefix, service in LOGGER_SERVICE.items():
        if logger == prefix or logger.startswith(prefix + "."):
            return service
    return None


def split_output(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    records, other = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        (records if isinstance(value, dict) else other).append(value if isinstance(value, dict) else line)
    return records, other


def batch_done(http: httpx.Client, batch_id: str) -> dict[str, Any] | None:
    body = http.get(f"/api/v1/batches/{batch_id}").json()
    return body if body["done"] == body["total"] else None


@pytest.fixture(scope="module")
def run():
    var = TMP / "up-logs-var"
    api_port = free_port()
    env = stack_env(
        LOG_FORMAT="json",
        VAR_DIR=str(var),
        STORAGE_DIR=str(TMP / "up-logs-storage"),
        DATABASE_URL=f"sqlite:///{var / 'up-logs.db'}",
        API_PORT=str(api_port),
        FLOWER_PORT=str(free_port()),
        WORKER_METRICS_PORT=str(free_port()),
        EMBEDDED_REDIS_PORT=str(free_port()),
    )
    env.pop("REDIS_URL", None)  # the embedded Valkey, run by `librarian up` as its own process
    process = ManagedProcess("up-logs", cli("up"), env, TMP / "logs").start()
    try:
        process.wait_for(r'"event": "worker ready"', timeout=90)
        process.wait_for(r'"event": "beat: Starting\.\.\."', timeout=30)
        process.wait_for(r'"event": "Visit me at', timeout=30)
        wait_http(f"http://127.0.0.1:{api_port}/health", timeout=60, process=process)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http:
            demo_request = uuid.uuid4().hex
            answer = http.post(
                "/api/v1/tasks/test", params={"message": "logs", "steps": 1}, headers={"X-Request-ID": demo_request}
            )
            assert answer.status_code == 202, answer.text
            task_id = answer.json()["task_id"]
            wait_until(
                lambda: http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "SUCCESS",
                timeout=30,
                message="demo task did not finish",
            )

            models = TMP / "up-logs-models"
            models.mkdir(parents=True, exist_ok=True)
            files = [not_3dm(models), valid_part(models)]
            handles = [path.open("rb") for path in files]
            try:
                answer = http.post(
                    "/api/v1/batches",
                    files=[
                        ("files", (p.name, h, "application/octet-stream")) for p, h in zip(files, handles, strict=True)
                    ],
                )
            finally:
                for handle in handles:
                    handle.close()
            assert answer.status_code == 202, answer.text
            batch_id = answer.json()["batch_id"]
            batch = wait_until(lambda: batch_done(http, batch_id), timeout=90, message="batch did not finish")
        process.wait_for(r'"event": "task rejected"', timeout=10)
        # Read while everything runs (Celery's worker prints one plain "Warm shutdown" on SIGTERM).
        output = process.output()
    finally:
        process.stop(timeout=60)
    return {"output": output, "batch": batch, "task_id": task_id, "demo_request": demo_request}


def test_every_line_is_json_except_the_banner_for_people(run):
    _, other = split_output(run["output"])
    # `librarian up` prints the URLs for people before it starts anything (tests/cli/test_up.py);
    # nothing else is plain text.
    assert other and other[0].startswith(BANNER_START), other
    assert all(line.startswith("  ") for line in other[1:]), other
    assert run["output"].index(BANNER_START) < run["output"].index("{")


def test_each_line_names_the_process_that_wrote_it(run):
    records, _ = split_output(run["output"])
    assert {r.get("service") for r in records} == SERVICES
    wrong = [r for r in records if (want := expected_service(r.get("logger", ""))) and r["service"] != want]
    assert wrong == []
    # Celery's setup_logging receiver runs in beat too: its lines once said "worker".
    assert any(r["service"] == "beat" and r["logger"] == "celery.beat" for r in records)
    assert any(r["service"] == "flower" and r["logger"].startswith("flower.") for r in records)


def test_an_expected_rejection_is_one_line_without_a_traceback(run):
    records, _ = split_output(run["output"])
    [failure] = run["batch"]["failures"]
    expected = ("not_3dm.3dm", "preprocess_failed", "preprocess")
    assert (failure["filename"], failure["status"], failure["stage"]) == expected
    [rejected] = [r for r in records if r["event"] == "task rejected"]
    assert rejected["level"] == "info"
    assert rejected["error"] == "StageRejected"
    assert rejected["task_name"] == "librarian.pipeline.preprocess"
    assert "exception" not in rejected
    about_it = [r for r in records if r.get("task_id") == rejected["task_id"]]
    expected = ["item dead-lettered", "task rejected"]  # received and started are DEBUG lines
    assert [r["event"] for r in about_it] == expected, about_it
    errors = [r for r in records if r["level"] in ("error", "critical")]
    assert errors == []
    assert "raised unexpected" not in run["output"]


def test_one_access_line_per_request(run):
    records, _ = split_output(run["output"])
    mine = [r for r in records if r.get("request_id") == run["demo_request"] and r["service"] == "api"]
    assert [r["logger"] for r in mine] == ["librarian.api.access"], mine
    assert not [r for r in records if r["logger"] == "uvicorn.access"]


def test_flower_start_before_the_worker_answers_is_not_a_warning(run):
    records, _ = split_output(run["output"])
    inspect_lines = [r for r in records if r["event"].startswith("Inspect method")]
    assert all(r["level"] == "info" for r in inspect_lines), inspect_lines
