"""Scenario 14: a dead worker's in-flight work resumes elsewhere within seconds, with default settings.

Default time limits and the default broker visibility timeout (7,200 s): only the dead-holder
recovery (app/broker/holders.py, WORKER_DEAD_AFTER=10 s) can bring the messages a killed worker
held back in time. Workers are restarted at once under the same node name, as a supervisor does,
so each restart is a new incarnation of the same name.

- SIGKILL of a worker's process group under load, three times, two workers: nothing lost, and each
  task the killed worker held finishes within 15 s of the kill plus its own run time.
- SIGKILL of the worker validating a part: the part ends `validated` within 30 s, never left
  `processing`.
- SIGSTOP of the worker validating a part for 20 s, then SIGCONT: the other worker took the part
  over; the frozen one finishes its copy, does not ack or restore what was taken over, and the part
  ends `validated` with one consistent report. Duplicate executions are counted and reported.

N is 120 tasks of 1 s here; the `soak` variant runs 1,000 (LIBRARIAN_SOAK=1).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
import uuid
from pathlib import Path

import httpx
import pytest

from app.broker import keys
from tests.fixtures.models_3dm import large_model
from tests.reliability.helpers import Stack, kill_group_hard, redis_db_url, report, wait_until
from tests.utils.metrics import scrape, value

pytestmark = pytest.mark.integration

N = 120
SOAK_N = int(os.environ.get("LIBRARIAN_RELIABILITY_N") or 1000)
RUN_S = 1.0
DEAD_AFTER = 10.0  # the default WORKER_DEAD_AFTER


@pytest.fixture(scope="module")
def stack(broker):
    # database 9 is test_broker_outage's too: modules run one after the other, each flushes it
    with Stack("dead-worker", redis_db_url(broker, 9), WORKER_CONCURRENCY="2") as stack:
        yield stack


def held_task_ids(stack: Stack, incarnation: str) -> list[str]:
    """Task ids a worker incarnation holds unacknowledged right now (its holder records)."""
    client = stack.redis()
    tags = [t.decode() for t in client.smembers(keys.HELD.format(incarnation=incarnation))]
    raws = client.hmget("unacked", tags) if tags else []
    return [json.loads(raw)[0]["headers"]["id"] for raw in raws if raw]


def incarnation_of(process) -> str:
    ready = [line for line in process.json_lines() if line.get("event") == "worker ready"]
    assert ready and ready[-1].get("incarnation"), "the worker logged no incarnation when ready"
    return str(ready[-1]["incarnation"])


def kill_and_measure(stack: Stack, n: int) -> None:
    stack.stop_workers()
    workers = {"wa": stack.start_worker("wa"), "wb": stack.start_worker("wb")}
    producer = stack.producer()
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for i, task_id in enumerate(ids):
        producer.send_task("librarian.demo.sleep", kwargs={"seconds": RUN_S, "key": f"d{i}"}, task_id=task_id)

    def finished() -> int:
        return sum(1 for s in stack.states(ids).values() if s == "SUCCESS")

    kills, resume = [], []
    for fraction, node in ((0.15, "wa"), (0.4, "wb"), (0.65, "wa")):
        wait_until(
            lambda fraction=fraction: finished() >= n * fraction,
            timeout=300,
            interval=0.2,
            message=f"fewer than {fraction:.0%} of {n} tasks done",
        )
        victim = workers[node]
        incarnation = incarnation_of(victim)
        held = held_task_ids(stack, incarnation)
        kill_group_hard(victim)
        killed_at = time.monotonic()
        workers[node] = stack.start_worker(node)  # the supervisor's restart: same name, new incarnation
        pending = set(held)
        while pending and time.monotonic() - killed_at < 120:
            for task_id, state in stack.states(pending).items():
                if state == "SUCCESS":
                    resume.append(time.monotonic() - killed_at - RUN_S)
                    pending.discard(task_id)
            time.sleep(0.1)
        kills.append({"node": node, "held_at_kill": len(held), "unfinished_after_120s": len(pending)})
        assert not pending, f"tasks held by the killed {node} never finished: {sorted(pending)[:5]}"

    stack.wait_states(ids, {"SUCCESS"}, timeout=300)
    rows = stack.sql(
        "SELECT key, writes FROM diagnostic_record WHERE key LIKE 'd%' AND key NOT LIKE :starts", starts="%:start"
    )
    recovered = sum(
        value(scrape(w.metrics_url), "librarian_messages_recovered_total", reason="worker_dead")
        for w in workers.values()
    )
    report(
        "dead worker: SIGKILL x3 under load",
        tasks=n,
        kills=kills,
        resumed=len(resume),
        resume_max_s=round(max(resume), 1),
        resume_p50_s=round(statistics.median(resume), 1),
        finished=finished(),
        rows=len(rows),
        recovered_worker_dead=recovered,
        unacked_left=stack.redis().hlen("unacked"),
    )
    assert sum(k["held_at_kill"] for k in kills) > 0, "no kill caught a task in flight"
    assert len(rows) == n, "every task completed (one row per key)"
    assert max(resume) <= 15, f"a held task resumed {max(resume):.1f} s after the kill (plus its run time)"
    assert stack.redis().hlen("unacked") == 0


def test_tasks_held_by_a_sigkilled_worker_resume_elsewhere_within_seconds(stack):
    kill_and_measure(stack, N)


@pytest.mark.soak
def test_tasks_held_by_a_sigkilled_worker_resume_soak(stack):
    kill_and_measure(stack, SOAK_N)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return large_model(tmp_path_factory.mktemp("dead-worker"), n_objects=60_000)


def upload(base: str, path: Path) -> str:
    with path.open("rb") as handle:
        answer = httpx.post(f"{base}/api/v1/parts", files={"file": (path.name, handle)}, timeout=60)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["part_id"])


def part(base: str, part_id: str) -> dict:
    return httpx.get(f"{base}/api/v1/parts/{part_id}", timeout=10).json()


def wait_processing_and_held(stack: Stack, base: str, part_id: str) -> None:
    wait_until(
        lambda: part(base, part_id).get("status") == "processing" and stack.redis().hlen(keys.HOLDER) > 0,
        timeout=60,
        interval=0.02,
        message="the part never started validating",
    )


def api_base(stack: Stack) -> str:
    """The module's API, started by the first test that needs it."""
    if not hasattr(stack, "base"):
        stack.api, stack.base = stack.start_api("api")  # type: ignore[attr-defined]
    return str(stack.base)  # type: ignore[attr-defined]


def wait_final(base: str, part_id: str, timeout: float, message: str) -> dict:
    return wait_until(
        lambda: (p := part(base, part_id))["status"] in {"validated", "rejected", "failed"} and p,
        timeout=timeout,
        interval=0.2,
        message=message,
    )


def test_a_part_whose_worker_is_sigkilled_mid_file_ends_validated(stack, big_model):
    stack.stop_workers()
    base = api_base(stack)
    worker = stack.start_worker("wv", extra=("--queues", "validation"))
    part_id = upload(base, big_model)
    wait_processing_and_held(stack, base, part_id)
    kill_group_hard(worker)
    killed_at = time.monotonic()
    stack.start_worker("wv", extra=("--queues", "validation"))
    final = wait_final(base, part_id, 60, "the part stayed processing")
    took = time.monotonic() - killed_at
    report(
        "dead worker: part validated after its worker's SIGKILL",
        status=final["status"],
        validated_after_kill_s=round(took, 1),
    )
    assert final["status"] == "validated", final
    assert took <= 30, f"the part was validated {took:.1f} s after the kill"


def test_a_worker_frozen_past_the_limit_leaves_one_consistent_part(stack, big_model):
    stack.stop_workers()
    base = api_base(stack)
    frozen = stack.start_worker("wf", extra=("--queues", "validation"))
    part_id = upload(base, big_model)
    wait_processing_and_held(stack, base, part_id)
    task_id = part(base, part_id)["task_id"]
    os.killpg(frozen.pid, signal.SIGSTOP)
    other = stack.start_worker("wo", extra=("--queues", "validation"))
    time.sleep(20)
    os.killpg(frozen.pid, signal.SIGCONT)
    final = wait_final(base, part_id, 120, "the part never finished")

    def runs(process) -> int:
        return sum(
            1
            for line in process.json_lines()
            if line.get("task_id") == task_id and line.get("event") == "task succeeded"
        )

    wait_until(lambda: runs(frozen) >= 1, timeout=60, message="the frozen worker never finished its copy")
    time.sleep(2)  # its acknowledgement
    client = stack.redis()
    skipped = sum(1 for line in frozen.output().splitlines() if "acknowledgement of" in line and "skipped" in line)
    report(
        "dead worker: SIGSTOP 20 s, SIGCONT",
        status=final["status"],
        executions=runs(frozen) + runs(other),
        frozen_runs=runs(frozen),
        takeover_runs=runs(other),
        acks_skipped=skipped,
        unacked_left=client.hlen("unacked"),
        holders_left=client.hlen(keys.HOLDER),
        journal_left=client.hlen(keys.JOURNAL),
    )
    assert final["status"] == "validated", final
    assert runs(other) == 1, "the live worker took the frozen worker's part over"
    assert skipped >= 1, "the frozen worker's late ack must be skipped, not clear the other's records"
    assert client.hlen("unacked") == 0 and client.hlen(keys.HOLDER) == 0 and client.hlen(keys.JOURNAL) == 0
    again = part(base, part_id)

    def verdict(p: dict) -> dict:  # the summary without its timing: each run measures its own
        return {k: v for k, v in (p.get("summary") or {}).items() if k != "duration_seconds"}

    assert again["status"] == "validated" and verdict(again) == verdict(final), "one consistent part, either run's"
    assert frozen.alive(), "the frozen worker carries on"
