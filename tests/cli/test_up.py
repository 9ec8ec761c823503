"""`librarian up`: the supervised stack restarts a worker killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.conftest import TMP, stack_env
from tests.utils.processes import ManagedProcess, cli, free_port, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def up_stack(broker):
    api_port = free_port()
    var = TMP / "up-var"
    env = stack_env(
        REDIS_URL=broker.db_url(1),  # its own database: no task stealing
        API_PORT=str(api_port),
        VAR_DIR=str(var),
        DATABASE_URL=f"sqlite:///{var / 'up.db'}",
        WORKER_METRICS_PORT=str(free_port()),
    )
    process = ManagedProcess("up", cli("up", "--no-flower", "--no-beat"), env, TMP / "logs").start()
    process.wait_for(r'"event": "worker ready"', timeout=60)
    wait_http(f"http://127.0.0.1:{api_port}/health", timeout=60, process=process)
    process.var = var  # type: ignore[attr-defined]
    process.api = f"http://127.0.0.1:{api_port}"  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop(timeout=60)


def test_up_prints_the_urls_of_what_it_starts(up_stack):
    output = up_stack.output()
    assert f"{up_stack.api}/docs" in output
    assert "/metrics" in output


def test_worker_killed_with_sigkill_is_restarted_and_ready_within_30s(up_stack):
    pid_file = up_stack.var / "run" / "worker.pid"
    old_pid = int(pid_file.read_text())
    mark = len(up_stack.output())
    os.kill(old_pid, signal.SIGKILL)
    started = time.monotonic()
    up_stack.wait_for(r'"event": "worker ready"', timeout=30, after=mark)
    assert time.monotonic() - started < 30
    assert int(pid_file.read_text()) != old_pid
    # And the restarted worker serves a task submitted through the API.
    task_id = httpx.post(f"{up_stack.api}/api/v1/tasks/test", params={"message": "after restart", "steps": 1}).json()["task_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if httpx.get(f"{up_stack.api}/api/v1/tasks/{task_id}").json()["status"] == "SUCCESS":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the restarted worker did not run the task")


def test_ctrl_c_stops_every_child(up_stack):
    pids = {p.stem: int(p.read_text()) for p in (up_stack.var / "run").glob("*.pid")}
    assert {"api", "worker"} <= set(pids)
    up_stack.signal(signal.SIGINT)
    up_stack.process.wait(timeout=60)
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
