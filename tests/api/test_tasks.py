"""The task API over real HTTP: submit, follow progress, read results, revoke, refuse bad input."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.integration


def poll(http, task_id: str, until: set[str], timeout: float = 20.0) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/api/v1/tasks/{task_id}").json()
        seen.append(body)
        if body["status"] in until:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached {until}: last {seen[-1:]}")


def test_seed_flow_submit_then_poll_to_success_with_progress(http, worker):
    answer = http.post("/api/v1/tasks/test", params={"message": "Hello"})
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "PENDING"
    assert "Hello" in body["message"]
    uuid.UUID(body["task_id"])

    seen = poll(http, body["task_id"], {"SUCCESS", "FAILURE"})
    states = [s["status"] for s in seen]
    assert states[-1] == "SUCCESS"
    progress = [s for s in seen if s["status"] == "PROGRESS"]
    assert progress, states
    assert all(0 < s["progress"] <= 100 and "Hello" in s["message"] for s in progress)
    assert seen[-1]["progress"] == 100

    result = http.get(f"/api/v1/tasks/{body['task_id']}/result")
    assert result.status_code == 200
    assert result.json()["result"]["message"] == "Hello"


def test_result_is_409_while_the_task_is_not_finished(http, worker):
    task_id = http.post("/api/v1/tasks/test", params={"message": "slow", "steps": 20}).json()["task_id"]
    answer = http.get(f"/api/v1/tasks/{task_id}/result")
    assert answer.status_code == 409
    assert "not finished" in answer.json()["detail"]
    poll(http, task_id, {"SUCCESS"}, timeout=30)


def test_unknown_task_id_is_404_not_pending(http):
    missing = uuid.uuid4()
    for method, path in (
        ("GET", f"/api/v1/tasks/{missing}"),
        ("GET", f"/api/v1/tasks/{missing}/result"),
        ("DELETE", f"/api/v1/tasks/{missing}"),
    ):
        answer = http.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert str(missing) in answer.json()["detail"]


def test_revoke_marks_the_task_revoked(http, worker):
    # Occupy both pool slots so the third task is still queued when it is revoked.
    busy = [http.post("/api/v1/tasks/test", params={"message": "busy", "steps": 10}).json()["task_id"] for _ in range(2)]
    task_id = http.post("/api/v1/tasks/test", params={"message": "doomed"}).json()["task_id"]
    answer = http.delete(f"/api/v1/tasks/{task_id}")
    assert answer.status_code == 200
    assert answer.json()["status"] == "REVOKED"
    for other in busy:
        poll(http, other, {"SUCCESS"}, timeout=30)
    time.sleep(1.0)  # the worker has had its chance to pick the revoked one up
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "REVOKED"
    result = http.get(f"/api/v1/tasks/{task_id}/result").json()
    assert result["status"] == "REVOKED"
    assert http.delete(f"/api/v1/tasks/{task_id}").status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/v1/tasks/not-a-uuid", None),
        ("GET", "/api/v1/tasks/123/result", None),
        ("DELETE", "/api/v1/tasks/%2e%2e%2f", None),
        ("POST", "/api/v1/tasks/test", {"message": ""}),
        ("POST", "/api/v1/tasks/test", {"message": "x" * 1001}),
        ("POST", "/api/v1/tasks/test", {"steps": "many"}),
        ("POST", "/api/v1/tasks/test", {"steps": "0"}),
    ],
)
def test_malformed_input_answers_4xx_json(http, method, path, params):
    answer = http.request(method, path, params=params)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert "detail" in answer.json()


def test_malformed_body_answers_4xx_json(http):
    answer = http.post("/api/v1/tasks/test", content=b"\x00\xff{not json", headers={"content-type": "application/json"})
    assert answer.status_code < 500
    assert answer.headers["content-type"].startswith("application/json")


def test_every_api_answer_carries_a_request_id(http):
    answer = http.get("/health")
    assert len(answer.headers["x-request-id"]) >= 32
