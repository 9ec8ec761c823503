"""Scenario 12: security defaults.

* Flower without credentials answers 401 (with them, 200).
* docker-compose.yml: Redis requires a password; every published port binds 127.0.0.1.
* A whole workload (tasks that succeed and fail, uploads, a broker outage, Sentry events) on a
  password-protected broker with SENTRY_DSN pointing at a local sink: neither the Redis password
  nor the DSN's key appears in any health answer, log line, /metrics text or Sentry event.
* The API never answers a stack trace.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
import yaml

from tests.conftest import TMP
from tests.reliability.helpers import Stack, own_valkey, report, valkey_url, wait_until
from tests.utils.processes import ROOT, ManagedProcess, cli, free_port
from tests.utils.sentry_sink import SentrySink

pytestmark = pytest.mark.integration

TRACE_MARKERS = ("Traceback", 'File "', "site-packages", "/work/", '.py", line')


@pytest.fixture(scope="module")
def secure_stack():
    password = "rel" + secrets.token_hex(16)
    sink = SentrySink()
    dsn_key = secrets.token_hex(16)
    dsn = f"http://{dsn_key}@127.0.0.1:{sink.port}/1"
    server = own_valkey("security", password=password)
    holder = {"server": server}
    stack = Stack("security", valkey_url(password, server.port), SENTRY_DSN=dsn, SENTRY_TRACES_SAMPLE_RATE="1.0")
    try:
        yield stack, holder, password, dsn_key, sink
    finally:
        stack.stop()
        if holder["server"].is_running():
            holder["server"].stop()
        sink.close()


def test_flower_without_credentials_is_401(secure_stack):
    stack, *_ = secure_stack
    port = free_port()
    flower = ManagedProcess(f"rel-security-flower-{port}", cli("flower", "--port", str(port)), stack.env, TMP / "logs")
    stack.processes.append(flower)
    flower.start()
    url = f"http://127.0.0.1:{port}/"
    anonymous = wait_until(lambda: _get(url), timeout=60, message="Flower did not answer")
    wrong = httpx.get(url, auth=("librarian", "not-the-password"), timeout=10)
    right = httpx.get(url, auth=(stack.env.get("FLOWER_USER", "librarian"), stack.env["FLOWER_PASSWORD"]), timeout=10)
    api_anonymous = httpx.get(f"http://127.0.0.1:{port}/api/workers", timeout=10)
    report(
        "Flower auth",
        anonymous=anonymous.status_code,
        wrong_password=wrong.status_code,
        right_password=right.status_code,
        api_anonymous=api_anonymous.status_code,
    )
    assert anonymous.status_code == 401 and wrong.status_code == 401 and api_anonymous.status_code == 401
    assert right.status_code == 200


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def test_compose_redis_requires_a_password_and_ports_bind_loopback():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    redis = compose["services"]["redis"]
    command = redis["command"] if isinstance(redis["command"], list) else redis["command"].split()
    password_arg = command[command.index("--requirepass") + 1] if "--requirepass" in command else None
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    not_loopback = {
        name: [p for p in ports if not str(p).startswith("127.0.0.1:")]
        for name, ports in published.items()
        if any(not str(p).startswith("127.0.0.1:") for p in ports)
    }
    report(
        "compose defaults",
        redis_requirepass=password_arg,
        published=published,
        not_loopback=not_loopback,
        redis_url_has_password="${REDIS_PASSWORD" in str(compose.get("x-librarian-env", {}).get("REDIS_URL")),
    )
    assert password_arg and password_arg.startswith("${REDIS_PASSWORD:?"), (
        "redis must refuse to start without a password"
    )
    assert redis["ports"] and all(str(p).startswith("127.0.0.1:") for p in redis["ports"])
    assert not not_loopback


def test_no_secret_in_answers_logs_metrics_or_events(secure_stack, models):
    from app.core.embedded import embedded_server

    stack, holder, password, dsn_key, sink = secure_stack
    _, base = stack.start_api("api")
    worker = stack.start_worker("sec")
    texts: dict[str, str] = {}
    # No keep-alive: a pooled connection uvicorn closes after 5 s idle can race with its reuse.
    client = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    # The workload: tasks that succeed, a task that fails, an upload, an API error, a broker outage.
    ids = [
        client.post("/api/v1/tasks/test", params={"steps": 1, "message": f"w{n}"}).json()["task_id"] for n in range(5)
    ]
    failing = stack.producer().send_task("librarian.demo.read_storage", args=["../../etc/passwd"])
    with open(models["valid_part"], "rb") as handle:
        part = client.post("/api/v1/parts", files={"file": ("sec.3dm", handle)}).json()
    wait_until(lambda: all(client.get(f"/api/v1/tasks/{i}").json()["status"] == "SUCCESS" for i in ids), timeout=60)
    wait_until(lambda: failing.state == "FAILURE", timeout=30)
    wait_until(lambda: client.get(f"/api/v1/parts/{part['part_id']}").json()["status"] == "validated", timeout=60)
    texts["api error answer"] = client.post("/api/v1/diagnostics/sentry-error").text

    server = holder["server"]
    port, data_dir = server.port, server.data_dir
    server.stop()
    for path in ("/health", "/health-check/redis", "/health-check/celery"):
        texts[f"{path} (broker down)"] = client.get(path).text
    texts["submit (broker down)"] = client.post("/api/v1/tasks/test").text
    time.sleep(3)  # the worker notices, logs its reconnection attempts
    server = embedded_server(port=port, data_dir=data_dir, password=password)
    server.start()
    holder["server"] = server
    wait_until(lambda: client.get("/health-check/celery").status_code == 200, timeout=60)
    for path in ("/health", "/health-check/redis", "/health-check/celery", "/health-check/celery?deep=true"):
        texts[path] = client.get(path).text
    texts["api /metrics"] = client.get("/metrics").text
    texts["worker /metrics"] = httpx.get(worker.metrics_url, timeout=10).text  # type: ignore[attr-defined]
    wait_until(lambda: sink.of_type("event"), timeout=20, message="no Sentry event arrived at the sink")
    time.sleep(1)
    texts["sentry events"] = repr(sink.items)
    client.close()
    for process in stack.processes:
        texts[f"output of {process.name}"] = process.output()

    leaks = {
        name: [
            secret_name
            for secret_name, secret in (("redis password", password), ("sentry dsn key", dsn_key))
            if secret in text
        ]
        for name, text in texts.items()
    }
    leaks = {name: found for name, found in leaks.items() if found}
    error_answer = texts["api error answer"]
    report(
        "no secrets anywhere",
        texts_checked=len(texts),
        bytes_checked=sum(len(t) for t in texts.values()),
        sentry_events=len(sink.of_type("event")),
        leaks=leaks,
        api_error_answer=error_answer,
    )
    assert not leaks, leaks
    assert error_answer == '{"detail":"internal error"}'
    assert not any(marker in error_answer for marker in TRACE_MARKERS)


def test_the_api_never_answers_a_stack_trace(secure_stack):
    stack, *_ = secure_stack
    running = [p.base_url for p in stack.processes if hasattr(p, "base_url") and p.alive()]  # type: ignore[attr-defined]
    base = running[0] if running else stack.start_api("api")[1]
    probes = {
        "sentry-error": httpx.post(f"{base}/api/v1/diagnostics/sentry-error", timeout=10),
        "bad uuid": httpx.get(f"{base}/api/v1/tasks/not-a-uuid", timeout=10),
        "bad query": httpx.post(f"{base}/api/v1/tasks/test", params={"steps": "x" * 5000}, timeout=10),
        "bad json": httpx.post(
            f"{base}/api/v1/tasks/test", content=b"{\x00", timeout=10, headers={"content-type": "application/json"}
        ),
        "huge header": httpx.get(f"{base}/health", headers={"x-junk": "j" * 60_000}, timeout=10),
        "unknown path": httpx.get(f"{base}/../../etc/passwd", timeout=10),
        "bad method": httpx.request("PATCH", f"{base}/api/v1/parts", timeout=10),
    }
    found = {name: [m for m in TRACE_MARKERS if m in answer.text] for name, answer in probes.items()}
    report(
        "no stack trace in answers",
        statuses={n: a.status_code for n, a in probes.items()},
        with_trace={n: f for n, f in found.items() if f},
    )
    assert not any(found.values()), found
    assert probes["sentry-error"].json() == {"detail": "internal error"}
