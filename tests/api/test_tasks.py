"""The task API over real HTTP: submit, follow progress, read results, revoke, refuse bad input."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.integration


def poll(http, task_id: str, until: set[str], timeout: float = 20.0, interval: float = 0.05) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/api/v1/tasks/{task_id}").json()
        seen.append(body)
        if body["status"] in until:
            return seen
        time.sleep(interval)
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


def test_progress_message_is_the_task_message_or_its_stage():
    from app.api.routes.tasks import _progress

    demo, validate, parse = "librarian.demo.process", "librarian.validation.validate_file", "librarian.pipeline.parse"
    assert _progress(demo, "PROGRESS", {"percent": 40, "message": "step 2/5: Hello"}) == (40, "step 2/5: Hello")
    assert _progress(validate, "PROGRESS", {"percent": 92, "stage": "geometry", "part_id": "p"}) == (92, "geometry")
    assert _progress(parse, "STARTED", {"pid": 1}) == (0, "parse")
    assert _progress(validate, "STARTED", {"pid": 1}) == (0, None)
    assert _progress(parse, "RETRY", OSError("disk")) == (None, "OSError: disk")
    assert _progress(parse, "SUCCESS", {"item_id": "i"}) == (100, None)


def test_a_validation_answers_its_current_stage_as_message(http, worker, models):
    from tests.utils.api import upload

    task_id = upload(http, models["large_model"]).json()["task_id"]
    seen = poll(http, task_id, {"SUCCESS", "FAILURE"}, timeout=60, interval=0.01)
    assert seen[-1]["status"] == "SUCCESS", seen[-1]
    assert seen[-1]["task_name"] == "librarian.validation.validate_file"
    progress = [s for s in seen if s["status"] == "PROGRESS"]
    assert progress, [s["status"] for s in seen]
    stages = {"reading", "metadata", "nomenclature", "geometry", "done"}
    assert all(s["message"] in stages for s in progress), progress


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


def wait_state(celery, task_id: str, until: set[str], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = celery.AsyncResult(task_id).state
        if state in until:
            return state
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached {until}")


def occupy_both_pool_slots(celery, seconds: float) -> list:
    """Two sleeps running on the worker (concurrency 2): anything sent next waits in its queue."""
    blockers = [celery.send_task("librarian.demo.sleep", args=[seconds]) for _ in range(2)]
    for blocker in blockers:
        wait_state(celery, blocker.id, {"STARTED"})
    return blockers


def runs_recorded(key: str) -> int:
    from sqlmodel import Session

    from app.core.db import get_engine
    from app.models import DiagnosticRecord

    with Session(get_engine()) as session:
        record = session.get(DiagnosticRecord, f"{key}:start")
        return record.writes if record else 0


def test_revoke_a_running_task_stops_it(http, worker):
    task_id = http.post("/api/v1/tasks/test", params={"message": "long", "steps": 100}).json()["task_id"]
    poll(http, task_id, {"PROGRESS"})
    answer = http.delete(f"/api/v1/tasks/{task_id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "REVOKED" and body["terminated"] is True, body
    assert body["task_name"] == "librarian.demo.process"
    assert "SIGTERM" in body["message"]
    # The demo job writes PROGRESS every 0.2 s: had it run on, it would overwrite REVOKED.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "REVOKED"
        time.sleep(0.1)
    result = http.get(f"/api/v1/tasks/{task_id}/result").json()
    assert result["status"] == "REVOKED" and result["error"]["type"] == "TaskRevokedError", result
    # The pool replaced the killed child: the next task runs to the end.
    after = http.post("/api/v1/tasks/test", params={"message": "after"}).json()["task_id"]
    poll(http, after, {"SUCCESS"}, timeout=30)


def test_revoke_a_task_queued_behind_others_never_runs(http, worker, celery):
    blockers = occupy_both_pool_slots(celery, 3)
    task_id = http.post("/api/v1/tasks/test", params={"message": "doomed"}).json()["task_id"]
    answer = http.delete(f"/api/v1/tasks/{task_id}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "REVOKED" and body["terminated"] is False, body
    assert "will not run" in body["message"]
    for blocker in blockers:
        blocker.get(timeout=30)
    time.sleep(1.0)  # the worker has had its chance to pick the revoked one up
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "REVOKED"
    assert http.get(f"/api/v1/tasks/{task_id}/result").json()["status"] == "REVOKED"


def test_revoke_a_task_waiting_for_its_countdown_never_runs(http, worker, celery, broker):
    from app.core.task_registry import record_issued

    task_id, key = str(uuid.uuid4()), f"countdown-{uuid.uuid4().hex[:8]}"
    record_issued(broker.client(), task_id, "librarian.demo.sleep")
    celery.send_task("librarian.demo.sleep", args=[0.1], kwargs={"key": key}, task_id=task_id, countdown=3)
    answer = http.delete(f"/api/v1/tasks/{task_id}")
    assert answer.status_code == 200
    assert answer.json()["terminated"] is False
    time.sleep(5)  # past the countdown
    assert runs_recorded(key) == 0
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "REVOKED"


def test_revoke_a_finished_task_is_409_with_the_reason(http, worker):
    task_id = http.post("/api/v1/tasks/test", params={"message": "quick", "steps": 1}).json()["task_id"]
    poll(http, task_id, {"SUCCESS"})
    answer = http.delete(f"/api/v1/tasks/{task_id}")
    assert answer.status_code == 409
    assert answer.json()["detail"] == "task already SUCCESS: nothing to revoke"
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "SUCCESS"


def test_revoke_twice_is_409(http, worker, celery):
    blockers = occupy_both_pool_slots(celery, 2)
    task_id = http.post("/api/v1/tasks/test", params={"message": "twice"}).json()["task_id"]
    assert http.delete(f"/api/v1/tasks/{task_id}").status_code == 200
    again = http.delete(f"/api/v1/tasks/{task_id}")
    assert again.status_code == 409
    assert "REVOKED" in again.json()["detail"]
    for blocker in blockers:
        blocker.get(timeout=30)


def test_revoke_a_queued_validation_fails_its_part(http, worker, celery, models):
    from tests.utils.api import upload

    blockers = occupy_both_pool_slots(celery, 3)
    submitted = upload(http, models["valid_part"]).json()
    answer = http.delete(f"/api/v1/tasks/{submitted['task_id']}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["part_id"] == submitted["part_id"] and body["terminated"] is False, body
    for blocker in blockers:
        blocker.get(timeout=30)
    time.sleep(1.0)  # the worker has had its chance to start the validation
    part = http.get(f"/api/v1/parts/{submitted['part_id']}").json()
    assert part["status"] == "failed", part
    assert part["error"].startswith("revoked"), part
    assert part["attempts"] == 0, part  # never started
    assert http.get(f"/api/v1/tasks/{submitted['task_id']}").json()["status"] == "REVOKED"


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


# -- Issued ids outlive their results (RESULT_EXPIRES): 404 never issued, 410 expired, else the state --

SHORT_RESULT_EXPIRES = 2


@pytest.fixture(scope="module")
def short_results(broker):
    """An API and a worker whose results expire after 2 s, on Redis database 4 (flushed), and a
    client on that database."""
    import httpx
    import redis

    from tests.conftest import stack_env, start_api, start_worker

    url = broker.db_url(4)
    env = stack_env(REDIS_URL=url, RESULT_EXPIRES=str(SHORT_RESULT_EXPIRES))
    api, base = start_api("api-short-results", env=env)
    worker = None
    try:
        worker = start_worker("short-results", env=env)
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client, redis.Redis.from_url(url, socket_timeout=5)
    finally:
        if worker is not None:
            worker.stop()
        api.stop()


def test_a_finished_task_whose_result_expired_answers_410(short_results):
    from app.core.task_registry import issued
    from tests.utils.processes import wait_until

    http, client = short_results
    task_id = http.post("/api/v1/tasks/test", params={"steps": 1}).json()["task_id"]
    # Not a single GET until then: the worker, not the API, marks the id finished.
    wait_until(
        lambda: issued(client, task_id).finished, timeout=20, message="the worker never marked the task finished"
    )
    assert http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "SUCCESS"
    gone = wait_until(
        lambda: (r := http.get(f"/api/v1/tasks/{task_id}")).status_code == 410 and r,
        timeout=SHORT_RESULT_EXPIRES + 8,
        message="the expired result did not answer 410",
    )
    assert gone.headers["content-type"].startswith("application/json")
    detail = gone.json()["detail"]
    assert task_id in detail and "result expired" in detail, detail
    for method, path in (("GET", f"/api/v1/tasks/{task_id}/result"), ("DELETE", f"/api/v1/tasks/{task_id}")):
        answer = http.request(method, path)
        assert answer.status_code == 410 and "result expired" in answer.json()["detail"], (method, answer.text)
    assert http.get(f"/api/v1/tasks/{uuid.uuid4()}").status_code == 404


def test_a_task_queued_longer_than_result_expires_answers_its_state(short_results):
    http, _ = short_results
    # Two 6 s jobs fill the worker's two pool slots: the next one waits in its queue.
    blockers = [http.post("/api/v1/tasks/test", params={"message": "blocker", "steps": 30}).json() for _ in range(2)]
    for blocker in blockers:
        poll(http, blocker["task_id"], {"PROGRESS"})
    task_id = http.post("/api/v1/tasks/test", params={"message": "patient", "steps": 1}).json()["task_id"]
    time.sleep(SHORT_RESULT_EXPIRES + 1)  # where the id used to be forgotten (404 "never issued")
    waiting = http.get(f"/api/v1/tasks/{task_id}")
    assert waiting.status_code == 200, waiting.text
    body = waiting.json()
    assert body["status"] == "PENDING" and body["held"] is False, body
    assert body["task_name"] == "librarian.demo.process"
    assert poll(http, task_id, {"SUCCESS", "FAILURE"}, timeout=30)[-1]["status"] == "SUCCESS"


def test_a_task_held_longer_than_result_expires_answers_held(short_results):
    from tests.utils.processes import wait_until

    http, _ = short_results
    owner = f"patient-{uuid.uuid4().hex[:8]}"
    assert http.post(f"/api/v1/agents/{owner}/pause").status_code == 200
    submitted_at = time.monotonic()
    task_id = http.post("/api/v1/tasks/test", params={"steps": 1, "owner": owner}).json()["task_id"]
    wait_until(lambda: http.get(f"/api/v1/tasks/{task_id}").json()["held"], timeout=10, message="never held")
    time.sleep(max(0.0, submitted_at + SHORT_RESULT_EXPIRES + 1 - time.monotonic()))
    answer = http.get(f"/api/v1/tasks/{task_id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "PENDING" and body["held"] is True and owner in body["message"], body
    assert http.post(f"/api/v1/agents/{owner}/resume").json()["released_tasks"] == 1
    assert poll(http, task_id, {"SUCCESS", "FAILURE"}, timeout=30)[-1]["status"] == "SUCCESS"
