"""The emergency brake: a paused user's tasks do not start; others' do; resume loses nothing."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest

from tests.utils.processes import wait_until

pytestmark = pytest.mark.integration


def submit(http, owner: str, steps: int = 1) -> str:
    answer = http.post("/api/v1/tasks/test", params={"message": owner, "steps": steps, "owner": owner})
    assert answer.status_code == 202, answer.text
    return answer.json()["task_id"]


def status(http, task_id: str) -> str:
    return http.get(f"/api/v1/tasks/{task_id}").json()["status"]


def test_paused_users_tasks_wait_others_run_and_resume_completes_all(http, worker):
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    assert http.post(f"/api/v1/agents/{alice}/pause").json()["paused"] is True
    time.sleep(0.3)  # the worker hears the pause over pub/sub
    held = [submit(http, alice) for _ in range(3)]
    free = [submit(http, bob) for _ in range(2)]
    for task_id in free:
        wait_until(lambda t=task_id: status(http, t) == "SUCCESS", timeout=20, message="bob's task did not run")
    wait_until(
        lambda: http.get(f"/api/v1/agents/{alice}").json()["held_tasks"] == 3,
        timeout=10,
        message="alice's tasks were not held",
    )
    assert [status(http, t) for t in held] == ["PENDING"] * 3
    answer = http.get(f"/api/v1/tasks/{held[0]}").json()
    assert answer["held"] is True and alice in answer["message"]
    assert http.get(f"/api/v1/tasks/{free[0]}").json()["held"] is False

    resumed = http.post(f"/api/v1/agents/{alice}/resume").json()
    assert resumed["paused"] is False and resumed["released_tasks"] == 3
    assert http.get(f"/api/v1/tasks/{held[0]}").json()["held"] is False  # released, queued again
    for task_id in held:
        wait_until(lambda t=task_id: status(http, t) == "SUCCESS", timeout=20, message="a held task was lost")
    assert http.get(f"/api/v1/agents/{alice}").json() == {
        "user_id": alice,
        "paused": False,
        "held_tasks": 0,
        "released_tasks": None,
    }


def test_no_task_of_a_paused_user_starts_later_than_one_second_after_the_pause(http, worker):
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    tasks = [submit(http, carol, steps=2) for _ in range(8)]  # ~0.4 s each, 2 at a time
    wait_until(lambda: status(http, tasks[0]) != "PENDING", timeout=20)
    http.post(f"/api/v1/agents/{carol}/pause")
    time.sleep(1.0)
    started = {t for t in tasks if status(http, t) != "PENDING"}
    time.sleep(2.0)
    assert {t for t in tasks if status(http, t) != "PENDING"} == started
    assert len(started) < len(tasks)
    http.post(f"/api/v1/agents/{carol}/resume")
    for task_id in tasks:
        wait_until(lambda t=task_id: status(http, t) == "SUCCESS", timeout=30, message="a task was lost")


def test_pause_survives_a_worker_restart_because_it_lives_in_redis(http, broker):
    dave = f"dave-{uuid.uuid4().hex[:6]}"
    http.post(f"/api/v1/agents/{dave}/pause")
    assert broker.client().exists(f"librarian:agent:paused:{dave}") == 1
    http.post(f"/api/v1/agents/{dave}/resume")
    assert broker.client().exists(f"librarian:agent:paused:{dave}") == 0


def test_events_stream_delivers_status_messages_in_order(http, api, worker):
    erin = f"erin-{uuid.uuid4().hex[:6]}"
    events: list[dict] = []
    subscribed = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{api.base_url}/api/v1/agents/{erin}/events", timeout=30) as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    if kind == "subscribed":
                        subscribed.set()
                        continue
                    events.append(json.loads(line.split(":", 1)[1]))
                    if events[-1]["event"] == "success":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert subscribed.wait(10), "no subscription confirmation"
    task_id = submit(http, erin, steps=3)
    listener.join(30)
    mine = [e for e in events if e.get("task_id") == task_id]
    kinds = [e["event"] for e in mine]
    assert kinds[0] == "started" and kinds[-1] == "success", kinds
    percents = [e["percent"] for e in mine if e["event"] == "progress"]
    assert percents == sorted(percents) and percents[-1] == 100, percents


@pytest.mark.parametrize("user", ["a b", "x" * 101, "../etc"])
def test_bad_user_ids_are_422(http, user):
    assert http.post(f"/api/v1/agents/{user}/pause").status_code in (404, 422)
