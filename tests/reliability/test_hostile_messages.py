"""Scenario 9: hostile messages published straight to the queue with kombu.

Pickle, an unknown task name, a JSON body that is not [args, kwargs, embed], bytes that are not
JSON under a JSON content type, a message without a task header that cannot be decoded, and a
20 MB body: each must be refused (not run), logged, and counted in
librarian_tasks_rejected_total{reason} / librarian_tasks_unknown_total on the worker's /metrics,
and the worker must stay up and keep serving.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import time
import uuid

import httpx
import pytest

from tests.reliability.helpers import Stack, redis_db_url, report, wait_until
from tests.utils.metrics import scrape, value

pytestmark = pytest.mark.integration

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@pytest.fixture(scope="module")
def stack(broker):
    with Stack("hostile-messages", redis_db_url(broker, 13)) as stack:
        stack.worker = stack.start_worker("hm")  # type: ignore[attr-defined]
        yield stack


def headers(task: str, task_id: str) -> dict:
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "",
        "kwargsrepr": "",
        "origin": "hostile",
    }


def publish(
    stack: Stack, body: bytes, *, content_type: str, message_headers: dict | None, content_encoding: str = "utf-8"
) -> None:
    from kombu import Connection, Exchange, Producer, Queue

    exchange = Exchange("default", type="direct")
    with Connection(stack.redis_url) as conn:
        Producer(conn).publish(
            body,
            routing_key="default",
            exchange=exchange,
            declare=[Queue("default", exchange, routing_key="default")],
            serializer=None,
            content_type=content_type,
            content_encoding=content_encoding,
            headers=message_headers or {},
        )


def counters(stack: Stack) -> dict[str, float]:
    samples = scrape(stack.worker.metrics_url)  # type: ignore[attr-defined]
    found = {
        reason: value(samples, "librarian_tasks_rejected_total", reason=reason)
        for reason in ("content_disallowed", "invalid", "unknown_format", "decode_error", "oversize")
    }
    found["unknown"] = value(samples, "librarian_tasks_unknown_total")
    found["started"] = value(samples, "librarian_tasks_started_total", task="librarian.demo.db_roundtrip")
    return found


def still_serving(stack: Stack) -> bool:
    worker = stack.worker  # type: ignore[attr-defined]
    return worker.alive() and (
        stack.producer().send_task("librarian.maintenance.health_check").get(timeout=20)["status"] == "ok"
    )


def roundtrip_body(key: str, value: str = "x") -> bytes:
    return json.dumps([[], {"key": key, "value": value}, EMBED]).encode()


CASES = {
    # name: (body, content type, headers, counter that must rise)
    "pickle": (
        lambda k, i: pickle.dumps(((), {"key": k, "value": "pickled"}, {})),
        "application/x-python-serialize",
        True,
        "content_disallowed",
    ),
    "unknown task": (lambda k, i: roundtrip_body(k), "application/json", "librarian.no_such_task", "unknown"),
    "json not a list": (lambda k, i: json.dumps({"key": k, "value": "x"}).encode(), "application/json", True, None),
    "invalid json bytes": (lambda k, i: b'{"key": "' + k.encode() + b'", broken', "application/json", True, None),
    "no task header, undecodable": (
        lambda k, i: b"\xff\xfe not json " + k.encode(),
        "application/json",
        False,
        "decode_error",
    ),
}


def revive(stack: Stack) -> dict:
    """After a worker died: note whether the message that killed it went back to the queue (a poison
    pill for the next worker), drop it, and start a fresh worker so the next case is independent."""
    client = stack.redis()
    found = {"requeued_messages": client.llen("default"), "unacked": client.hlen("unacked")}
    client.delete("default", "unacked", "unacked_index")
    stack.worker = stack.start_worker("hm")  # type: ignore[attr-defined]
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_message_is_refused_counted_and_the_worker_keeps_serving(stack, case):
    make_body, content_type, task, counter = CASES[case]
    worker = stack.worker  # type: ignore[attr-defined]
    try:
        _refuse(stack, worker, case, make_body, content_type, task, counter)
    except BaseException:
        # A dying worker first stops answering /metrics: let it finish exiting.
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=10)
        raise
    finally:
        if not worker.alive():
            report(
                f"hostile message: {case} killed the worker",
                exit_code=worker.process.returncode,
                last_error=next(
                    (line[:300] for line in reversed(worker.output().splitlines()) if "Unrecoverable" in line), None
                ),
                **revive(stack),
            )


def _refuse(stack, worker, case, make_body, content_type, task, counter):  # type: ignore[no-untyped-def]
    key = f"hostile-{uuid.uuid4().hex[:8]}"
    task_id = str(uuid.uuid4())
    before = counters(stack)
    mark = len(worker.output())
    message_headers = None
    if task is True:
        message_headers = headers("librarian.demo.db_roundtrip", task_id)
    elif task:
        message_headers = headers(task, task_id)
    encoding = "binary" if content_type.endswith("serialize") else "utf-8"
    publish(
        stack,
        make_body(key, task_id),
        content_type=content_type,
        message_headers=message_headers,
        content_encoding=encoding,
    )

    def refused() -> dict | None:
        if not worker.alive():
            return {"worker_died": 1.0}
        try:
            after = counters(stack)
        except httpx.HTTPError:
            return None
        rose = {name: after[name] - before[name] for name in after if after[name] != before[name]}
        return rose if any(k != "started" for k in rose) else None

    try:
        rose = wait_until(refused, timeout=15, interval=0.3)
    except TimeoutError:
        rose = {}
    time.sleep(0.5)
    assert worker.alive(), f"the worker died on the message:\n{worker.tail(5)[:2000]}"
    logged = worker.output()[mark:]
    serving = still_serving(stack)
    ran = stack.record(key) is not None
    report(
        f"hostile message: {case}",
        counters_rose=rose,
        task_ran=ran,
        worker_serving=serving,
        logged_lines=len([line for line in logged.splitlines() if line.strip()]),
    )
    assert serving, "the worker died or stopped serving"
    assert not ran, "the hostile message was executed"
    assert rose, "the refusal was not counted in librarian_tasks_rejected_total / librarian_tasks_unknown_total"
    if counter:
        assert rose.get(counter, 0) >= 1, rose
    assert logged.strip(), "the refusal was not logged"


def test_oversize_message_is_refused(stack):
    """A 20 MB task body is refused unread (MAX_MESSAGE_BYTES), counted as `oversize`."""
    key = f"oversize-{uuid.uuid4().hex[:8]}"
    task_id = str(uuid.uuid4())
    before = counters(stack)
    started = time.monotonic()
    publish(
        stack,
        roundtrip_body(key, "x" * (20 * 1024 * 1024)),
        content_type="application/json",
        message_headers=headers("librarian.demo.db_roundtrip", task_id),
    )
    outcome = wait_until(
        lambda: (
            stack.record(key)
            or stack.states([task_id])[task_id] != "PENDING"
            or (counters(stack)["oversize"] > before["oversize"])
        ),
        timeout=60,
        interval=0.5,
    )
    state = stack.states([task_id])[task_id]
    serving = still_serving(stack)
    record = stack.record(key)
    report(
        "hostile message: 20 MB body",
        task_state=state,
        row_written=record is not None,
        value_bytes=len(record[1]) if record else 0,
        worker_serving=serving,
        handled_in_s=round(time.monotonic() - started, 1),
        rejected_delta=sum(
            counters(stack)[r] - before[r]
            for r in ("content_disallowed", "invalid", "unknown_format", "decode_error", "oversize")
        ),
    )
    assert serving, "the worker died on a 20 MB message"
    assert outcome is not None
    assert counters(stack)["oversize"] == before["oversize"] + 1
    assert record is None and state != "SUCCESS", (
        "a 20 MB message was accepted and executed: nothing bounds the size of a task message "
        "(see the reliability report for the suggested check in app/worker/consumer.py)"
    )
