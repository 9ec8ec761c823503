"""Scenario 1: a worker SIGKILLed three times mid-load, and a pool child SIGKILLed mid-task.

Idempotent tasks (`librarian.demo.db_roundtrip`, upsert keyed k{i}) must all reach SUCCESS and leave
exactly N rows. With Redis, the messages a killed worker held come back only after the visibility
timeout, so this module runs with BROKER_VISIBILITY_TIMEOUT=7 (hard limit 4 s, max countdown 2 s,
which the start-up check accepts), and restarts the worker once the visibility timeout has passed:
kombu sweeps the unacked messages at connection start, then only every ~100 s (10 s interval x
throttle 10), so an earlier restart would wait for the next sweep.

A kill that lands between kombu's BRPOP and its `unacked` bookkeeping used to lose that one message
(bug B1 of the Redis transport; 3 of 5 soak runs lost 1 task of 1,000). Librarian's publish journal
now republishes it after BROKER_RECOVERY_GRACE (2 s here); the last test here shows it deterministically.

N is 300 here (~50 s on 2 cores); the `soak` variant runs 1,000 (LIBRARIAN_SOAK=1; any count with
LIBRARIAN_RELIABILITY_N).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from tests.reliability.helpers import (
    FAST_REDELIVERY,
    Stack,
    kill_group_hard,
    pool_children,
    process_state,
    redis_db_url,
    report,
    wait_until,
)
from tests.utils.metrics import scrape, value

pytestmark = pytest.mark.integration

N = 300
SOAK_N = int(os.environ.get("LIBRARIAN_RELIABILITY_N") or 1000)
VISIBILITY = int(FAST_REDELIVERY["BROKER_VISIBILITY_TIMEOUT"])


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("worker-kill", redis_db_url(broker, 7), **FAST_REDELIVERY) as stack:
        yield stack


def test_worker_sigkilled_three_times_loses_and_duplicates_nothing(stack):
    kill_under_load(stack, N)


@pytest.mark.soak
def test_worker_sigkilled_three_times_soak(stack):
    stack.stop_workers()
    stack.redis().flushdb()
    stack.sql("DELETE FROM diagnostic_record")
    kill_under_load(stack, SOAK_N)


def kill_under_load(stack: Stack, N: int) -> None:
    started, first_process = time.monotonic(), len(stack.processes)
    worker = stack.start_worker("wk")
    producer = stack.producer()
    ids = [str(uuid.uuid4()) for _ in range(N)]
    for i, task_id in enumerate(ids):
        producer.send_task("librarian.demo.db_roundtrip", kwargs={"key": f"k{i}", "value": f"v{i}"}, task_id=task_id)
    submitted_in = time.monotonic() - started

    def done() -> int:
        return stack.count("diagnostic_record")

    kills = []
    for fraction in (0.15, 0.4, 0.65):
        wait_until(
            lambda fraction=fraction: done() >= N * fraction,
            timeout=120,
            interval=0.05,
            message=f"fewer than {fraction:.0%} of {N} tasks done",
        )
        children = pool_children(worker.pid)
        kill_group_hard(worker)  # main process first, then its group: no orphaned pool child survives
        killed_at = time.monotonic()
        wait_until(
            lambda children=children: not any(process_state(pid) not in ("", "Z") for pid in children),
            timeout=10,
            message="a pool child outlived its killed worker",
        )
        unacked = stack.redis().hlen("unacked")
        kills.append({"at_s": round(killed_at - started, 1), "rows_at_kill": done(), "unacked_at_kill": unacked})
        # Restart once the killed worker's messages are older than the visibility timeout.
        time.sleep(max(0.0, killed_at + VISIBILITY + 1 - time.monotonic()))
        worker = stack.start_worker("wk")

    # Wait for every task; give up early once nothing is left anywhere in the broker for 15 s
    # (a message lost between BRPOP and `unacked` would come back within ~2 grace periods).
    deadline, idle_since = time.monotonic() + 180, None
    while True:
        states = stack.states(ids)
        missing = [i for i, s in states.items() if s not in {"SUCCESS", "FAILURE"}]
        if not missing:
            break
        client = stack.redis()
        empty = not client.hlen("unacked") and not any(client.llen(q) for q in ("default", "validation"))
        idle_since = (idle_since or time.monotonic()) if empty else None
        if time.monotonic() > deadline or (idle_since and time.monotonic() - idle_since > 15):
            report(
                "worker SIGKILL x3: unfinished",
                tasks=N,
                unfinished=len(missing),
                kills=kills,
                rows=stack.sql("SELECT COUNT(*) FROM diagnostic_record")[0][0],
                missing_keys=[f"k{ids.index(i)}" for i in missing[:10]],
                **stack.locate(missing[:10]),
            )
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    failed = [i for i, s in states.items() if s != "SUCCESS"]
    rows = stack.sql("SELECT key, writes FROM diagnostic_record WHERE key LIKE 'k%'")
    keys = {key for key, _ in rows}
    rerun = sum(1 for _, writes in rows if writes > 1)
    report(
        "worker SIGKILL x3",
        tasks=N,
        submitted_s=round(submitted_in, 1),
        succeeded=N - len(failed),
        failed=len(failed),
        rows=len(rows),
        lost=N - len(keys & {f"k{i}" for i in range(N)}),
        duplicate_rows=len(rows) - len(keys),
        rows_written_more_than_once=rerun,
        kills=kills,
        unacked_left=stack.redis().hlen("unacked"),
        recovered_from_journal=recovered(stack.processes[first_process:]),
        elapsed_s=round(elapsed, 1),
    )
    assert not failed, (
        f"{len(failed)} tasks did not succeed; a message found 'nowhere' was lost between kombu's BRPOP and its "
        "`unacked` bookkeeping and not recovered"
        " (see test_a_message_popped_by_a_worker_killed_before_recording_it_is_republished)"
    )
    assert len(rows) == N and keys == {f"k{i}" for i in range(N)}
    assert sum(k["unacked_at_kill"] for k in kills) > 0, "no kill caught a task in flight"


def recovered(processes: list) -> int:
    """Messages these workers republished from the publish journal (from their logs)."""
    total = 0
    for process in processes:
        for line in process.output().splitlines():
            if "republished lost task messages" in line:
                try:
                    total += int(json.loads(line)["count"])
                except (ValueError, KeyError):
                    total += 1
    return total


def test_pool_child_sigkilled_mid_task_is_redelivered_not_lost(stack):
    stack.stop_workers()
    # Roomy limits: a hard limit close to the pool's worker-lost detection (~2-8 s) races with it.
    worker = stack.start_worker(
        "wchild",
        extra=("--concurrency", "1"),
        env={"TASK_TIME_LIMIT": "30", "TASK_SOFT_TIME_LIMIT": "25", "BROKER_VISIBILITY_TIMEOUT": "60"},
    )
    producer = stack.producer()
    key = f"child-{uuid.uuid4().hex[:8]}"
    result = producer.send_task("librarian.demo.sleep", kwargs={"seconds": 3, "key": key})
    record = wait_until(lambda: stack.record(f"{key}:start"), timeout=30, message="the task never started")
    child = int(record[1])
    assert child in pool_children(worker.pid), "the task did not run in a pool child of this worker"
    os.kill(child, signal.SIGKILL)
    killed_at = time.monotonic()
    state = wait_until(
        lambda: (s := result.state) in {"SUCCESS", "FAILURE"} and s,
        timeout=60,
        message="the task of the killed child never finished",
    )
    starts, ends = stack.writes(f"{key}:start"), stack.writes(key)
    report(
        "pool child SIGKILL",
        state=state,
        error=repr(result.result) if state == "FAILURE" else None,
        starts=starts,
        completions=ends,
        recovered_in_s=round(time.monotonic() - killed_at, 1),
        worker_alive=worker.alive(),
        new_children=pool_children(worker.pid),
    )
    assert state == "SUCCESS"
    assert starts == 2 and ends == 1, "the task should run once more (redelivered), and complete once"
    assert worker.alive() and pool_children(worker.pid) and child not in pool_children(worker.pid)


def test_a_message_popped_by_a_worker_killed_before_recording_it_is_republished(stack):
    """kombu's Redis transport takes a message off the queue with BRPOP and only then records it in
    `unacked`; a worker SIGKILLed in between (here: frozen with SIGSTOP while its BRPOP is served)
    takes the message with it: it is in no queue and not in `unacked`. Librarian's publish journal
    (app/broker/journal.py) still holds it, and the next worker republishes it after the grace."""
    stack.stop_workers()
    worker = stack.start_worker("wpop", extra=("--concurrency", "1"))
    producer = stack.producer()
    client = stack.redis()
    time.sleep(1.5)  # idle: the worker now always has a BRPOP waiting on the queues
    attempts, located, task_id = 0, None, ""
    while attempts < 7:
        attempts += 1
        worker.signal(signal.SIGSTOP)
        task_id = str(uuid.uuid4())
        producer.send_task(
            "librarian.demo.db_roundtrip", kwargs={"key": f"pop-{task_id[:8]}", "value": "x"}, task_id=task_id
        )
        time.sleep(0.3)
        if client.llen("default") == 0:  # the frozen worker's BRPOP took it
            kill_group_hard(worker)
            located = stack.locate([task_id])
            break
        worker.signal(signal.SIGCONT)  # its BRPOP had timed out: let it take this one, try again
        stack.wait_states([task_id], {"SUCCESS"}, timeout=30)
        time.sleep(0.5)
    assert located is not None, "could not catch the worker between BRPOP and its bookkeeping"
    assert located["where"][task_id] == "nowhere but the journal (recoverable)", located

    killed_at = time.monotonic()
    replacement = stack.start_worker("wpop2", extra=("--concurrency", "1"))
    stack.wait_states([task_id], {"SUCCESS"}, timeout=60)
    recovered_in = time.monotonic() - killed_at
    recovered = value(scrape(replacement.metrics_url), "librarian_messages_recovered_total", reason="lost_in_transit")
    report(
        "message popped by a killed worker",
        attempts=attempts,
        where_after_kill=located["where"][task_id],
        recovered_in_s=round(recovered_in, 1),
        messages_recovered=recovered,
        rows=stack.writes(f"pop-{task_id[:8]}"),
        journal_left=client.hlen("librarian:journal"),
    )
    assert recovered == 1, "the replacement worker should have republished exactly this message"
    assert stack.writes(f"pop-{task_id[:8]}") == 1, "the task ran once"
    assert client.hlen("librarian:journal") == 0, "acknowledged: nothing left in the journal"
