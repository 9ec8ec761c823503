"""Exactly one beat schedules: a second `librarian beat` waits for the RedBeat lock as a standby,
takes over when the leader is killed, and never runs a periodic task twice."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import datetime
from itertools import pairwise

import pytest
import redis

from tests.conftest import TMP, stack_env
from tests.utils.processes import ManagedProcess, cli, wait_until

pytestmark = pytest.mark.integration

LOCK_TIMEOUT = 4  # the standby takes over within this (plus one loop of a second) of the leader's death
INTERVAL = 2.0  # the canary's period here (CANARY_INTERVAL)
ACQUIRED = r"beat: Acquired lock"
CANARY_SENT = "Sending due task canary-health-check"


def start_beat(name: str, env: dict[str, str]) -> ManagedProcess:
    return ManagedProcess(name, cli("beat"), env, TMP / "logs").start()


def probe_beat(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cli("probe", "beat"), env=env, capture_output=True, text=True, timeout=30)


def canary_sends(process: ManagedProcess) -> list[float]:
    return [
        datetime.fromisoformat(line["timestamp"]).timestamp()
        for line in process.json_lines()
        if CANARY_SENT in line.get("event", "")
    ]


def test_a_second_beat_waits_then_takes_over_without_running_anything_twice(broker):
    url = broker.db_url(13)
    env = stack_env(REDIS_URL=url, BEAT_LOCK_TIMEOUT=str(LOCK_TIMEOUT), CANARY_INTERVAL=str(INTERVAL))
    client = redis.Redis.from_url(url, socket_timeout=5)
    assert probe_beat(env).returncode == 1  # no beat yet
    leader = start_beat("beat-leader", env)
    standby = None
    try:
        leader.wait_for(ACQUIRED, timeout=60)
        wait_until(lambda: len(canary_sends(leader)) >= 2, timeout=30, message="the leader never sent the canary")
        done = probe_beat(env)
        assert done.returncode == 0 and "a beat schedules" in done.stdout, done.stdout + done.stderr

        standby = start_beat("beat-standby", env)
        standby.wait_for(r"beat: Starting", timeout=60)
        time.sleep(LOCK_TIMEOUT + 2)  # longer than the lock would live unrenewed
        assert standby.alive(), standby.tail()
        assert "Acquired lock" not in standby.output() and not canary_sends(standby), standby.tail()

        leader.signal(signal.SIGKILL)  # no lock release: the standby waits out the lock's TTL
        killed_at = time.monotonic()
        standby.wait_for(ACQUIRED, timeout=LOCK_TIMEOUT + 15)
        took_over = time.monotonic() - killed_at
        assert took_over <= LOCK_TIMEOUT + 5, took_over
        wait_until(lambda: len(canary_sends(standby)) >= 2, timeout=15, message="the new leader never sent the canary")

        sends = sorted(canary_sends(leader) + canary_sends(standby))
        gaps = [later - earlier for earlier, later in pairwise(sends)]
        assert min(gaps) >= INTERVAL * 0.5, gaps  # never two beats sending the same run
        assert client.llen("maintenance") == len(sends)  # nothing consumes this database's queues
        wait_until(lambda: probe_beat(env).returncode == 0, timeout=10, message="the probe never saw the new leader")
    finally:
        leader.stop()
        if standby is not None:
            standby.stop()
