"""`librarian up`: the supervised stack restarts a worker killed with SIGKILL, refuses a second
stack on its VAR_DIR or its ports, and stops everything on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from tests.conftest import TMP, stack_env
from tests.utils.processes import ROOT, ManagedProcess, cli, free_port, wait_http

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
    process.env = env  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop(timeout=60)


def test_up_prints_the_urls_of_what_it_starts(up_stack):
    output = up_stack.output()
    assert f"{up_stack.api}/docs" in output
    assert f"{up_stack.api}/ui/" in output  # the console
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
    submitted = httpx.post(f"{up_stack.api}/api/v1/tasks/test", params={"message": "after restart", "steps": 1})
    task_id = submitted.json()["task_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if httpx.get(f"{up_stack.api}/api/v1/tasks/{task_id}").json()["status"] == "SUCCESS":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the restarted worker did not run the task")


def child_pids(var) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (var / "run").glob("*.pid")}


def run_second_up(name: str, env: dict[str, str]) -> tuple[int, str, float]:
    """Run another `librarian up` to its end: exit code, output, seconds taken."""
    second = ManagedProcess(name, cli("up", "--no-flower", "--no-beat"), env, TMP / "logs").start()
    started = time.monotonic()
    try:
        code = second.process.wait(timeout=30)
    finally:
        second.stop(timeout=30)  # if it did start something after all, it goes
    return code, second.output(), time.monotonic() - started


def assert_unharmed(up_stack, pids: dict[str, int]) -> None:
    assert up_stack.alive()
    assert child_pids(up_stack.var) == pids
    for pid in pids.values():
        os.kill(pid, 0)  # still running
    assert httpx.get(f"{up_stack.api}/health", timeout=10).status_code == 200


def test_a_second_up_on_the_same_var_dir_exits_at_once_naming_the_running_stack(up_stack):
    pids = child_pids(up_stack.var)
    code, output, took = run_second_up("up-second-same-var", up_stack.env)
    assert code != 0, output
    assert took < 15, f"took {took:.1f}s"
    assert f"pid {up_stack.pid}" in output, output
    assert f"api {up_stack.api}" in output and f"{up_stack.api}/docs" in output
    assert '"event": "process started"' not in output  # it started nothing
    assert_unharmed(up_stack, pids)


def test_a_second_up_on_the_same_ports_exits_at_once_naming_the_port_and_its_owner(up_stack):
    pids = child_pids(up_stack.var)
    env = dict(up_stack.env, VAR_DIR=str(TMP / "up-var-second"), DATABASE_URL=f"sqlite:///{TMP / 'up-second.db'}")
    code, output, took = run_second_up("up-second-same-ports", env)
    assert code != 0, output
    assert took < 15, f"took {took:.1f}s"
    api_port = up_stack.api.rsplit(":", 1)[1]
    assert f"port {api_port} (API, API_PORT) on 127.0.0.1 is in use by pid {pids['api']}" in output, output
    assert "(worker metrics, WORKER_METRICS_PORT)" in output
    assert '"event": "process started"' not in output
    assert_unharmed(up_stack, pids)


def test_make_help_warns_that_make_clean_deletes_all_data():
    make = shutil.which("make")
    if make is None:
        pytest.skip("no `make` on this machine")
    output = subprocess.run([make, "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    (line,) = [line for line in output.splitlines() if line.startswith("make clean")]
    assert "deletes ALL local data" in line and "var/" in line


def test_ctrl_c_stops_every_child(up_stack):
    pids = {p.stem: int(p.read_text()) for p in (up_stack.var / "run").glob("*.pid")}
    assert {"api", "worker"} <= set(pids)
    up_stack.signal(signal.SIGINT)
    assert up_stack.process.wait(timeout=60) == 0
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    last = up_stack.output().strip().splitlines()[-1]
    assert '"event": "all stopped"' in last, last
