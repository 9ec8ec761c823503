"""Scenario 2: the broker SIGKILLed mid-load, restarted on the same data dir and port.

Own embedded Valkey with AOF `appendfsync always`: every write the server acknowledged is on disk
before the reply, so every submission the API answered 202 must complete. Submissions made while
the broker is down must get a 503 JSON answer (never a 500), and succeed when the client retries.
Short limits (visibility 4 s > hard limit 2 s + countdown 1 s) so the tasks a worker was running
when the connection dropped come back quickly; the outage lasts longer than the visibility
timeout, so the worker's sweep at reconnection restores them.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from tests.reliability.helpers import Stack, own_valkey, report, valkey_url, wait_until

pytestmark = pytest.mark.integration

BEFORE = 40
AFTER = 30
OUTAGE_SECONDS = 6.0
LIMITS = {
    "BROKER_VISIBILITY_TIMEOUT": "4",
    "TASK_TIME_LIMIT": "2",
    "TASK_SOFT_TIME_LIMIT": "1",
    "MAX_TASK_COUNTDOWN": "1",
}


@pytest.fixture(scope="module")
def broker_stack():
    password = secrets.token_hex(12)
    server = own_valkey("broker-kill", password=password, appendfsync="always")
    holder = {"server": server}
    stack = Stack("broker-kill", valkey_url(password, server.port), **LIMITS)
    try:
        yield stack, holder, password
    finally:
        stack.stop()
        if holder["server"].is_running():
            holder["server"].stop()


def test_broker_sigkill_loses_no_acknowledged_submission(broker_stack):
    from app.core.embedded import embedded_server

    stack, holder, password = broker_stack
    server = holder["server"]
    port, data_dir = server.port, server.data_dir
    _, base = stack.start_api("api")
    stack.start_worker("bk")

    accepted: list[str] = []
    refused: list[tuple[int, str]] = []  # (index, message) of submissions to retry
    codes: dict[int, int] = {}
    slowest_refusal = 0.0
    client = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
    started = time.monotonic()

    def submit(message: str) -> httpx.Response:
        answer = client.post("/api/v1/tasks/test", params={"steps": 1, "message": message})
        codes[answer.status_code] = codes.get(answer.status_code, 0) + 1
        return answer

    def attempt(i: int) -> None:
        message = f"m{i}"
        t0 = time.monotonic()
        answer = submit(message)
        if answer.status_code == 202:
            accepted.append(answer.json()["task_id"])
            return
        assert answer.status_code == 503, f"{answer.status_code}: {answer.text}"
        body = answer.json()
        assert body["dependency"] == "redis" and "detail" in body
        nonlocal slowest_refusal
        slowest_refusal = max(slowest_refusal, time.monotonic() - t0)
        refused.append((i, message))

    i = 0
    for _ in range(BEFORE):  # load before the kill
        attempt(i)
        i += 1
    backlog = sum(1 for state in stack.states(accepted).values() if state != "SUCCESS")
    server.terminate()  # SIGKILL, while the worker is busy with the backlog
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < OUTAGE_SECONDS:  # a client that keeps trying, 4 per second
        attempt(i)
        i += 1
        time.sleep(0.25)
    server = embedded_server(port=port, data_dir=data_dir, password=password, appendfsync="always")
    server.start()
    holder["server"] = server
    restarted_at = time.monotonic()
    for _ in range(AFTER):
        attempt(i)
        i += 1

    retried_ok = 0
    for _, message in refused:  # the client's retry, after the outage
        answer = wait_until(
            lambda m=message: (a := submit(m)).status_code == 202 and a,
            timeout=30,
            message=f"retry of {message} never accepted",
        )
        accepted.append(answer.json()["task_id"])
        retried_ok += 1

    def unfinished() -> list[str]:
        left = []
        for task_id in accepted:
            answer = client.get(f"/api/v1/tasks/{task_id}")
            if answer.status_code != 200 or answer.json()["status"] != "SUCCESS":
                left.append(task_id)
        return left

    pending = accepted
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        pending = [t for t in unfinished() if t in set(pending)]
        if pending:
            time.sleep(1)
    client.close()
    report(
        "broker SIGKILL",
        submissions=i,
        accepted_202=len(accepted) - retried_ok,
        refused_503=len(refused),
        retried_then_accepted=retried_ok,
        unfinished_at_kill=backlog,
        completed=len(accepted) - len(pending),
        lost=len(pending),
        http_codes=codes,
        slowest_503_s=round(slowest_refusal, 2),
        outage_s=round(restarted_at - killed_at, 1),
        elapsed_s=round(time.monotonic() - started, 1),
    )
    assert 500 not in codes and set(codes) <= {202, 503}
    assert refused, "no submission fell in the outage"
    assert slowest_refusal < 2.5
    assert not pending, f"{len(pending)} acknowledged tasks never completed: {pending[:5]}"
