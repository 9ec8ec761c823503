"""`librarian api --workers 2`: /metrics counts every process's requests, whichever process answers."""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import stack_env, start_api
from tests.utils.metrics import scrape, value
from tests.utils.processes import wait_until

pytestmark = pytest.mark.integration

N_SUBMITS, N_CHECKS, SCRAPES = 40, 30, 8
SUBMIT, CHECK = "/api/v1/tasks/test", "/health-check/redis"  # nothing else calls these on this API


@pytest.fixture(scope="module")
def two_processes(broker):
    """Two API processes on a Redis database of their own, no worker consuming it."""
    process, base = start_api("api-multiprocess", env=stack_env(REDIS_URL=broker.db_url(6)), extra=("--workers", "2"))
    try:
        # /health answering means one process is up: wait for both, so both take connections.
        wait_until(
            lambda: process.output().count("Application startup complete") >= 2,
            timeout=60,
            message="the second API process never started",
        )
        yield base
    finally:
        process.stop()


def requests_per_process(directory: Path, tmp_path: Path) -> dict[int, float]:
    """Our requests (librarian_http_requests_total) in each process's own counter file, read alone."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        alone = tmp_path / path.stem
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        total = 0.0
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            samples = [s for s in family.samples if s.name == "librarian_http_requests_total"]
            total += sum(s.value for s in samples if s.labels["handler"] in (SUBMIT, CHECK))
        counts[int(path.stem.rsplit("_", 1)[1])] = total
    return counts


def test_metrics_count_every_process_exactly(two_processes, tmp_path):
    base = two_processes

    def call(i: int) -> int:
        # A new connection per request: uvicorn's processes share the listening socket, each takes
        # the connections it accepts (one keep-alive connection would stay with one process).
        if i < N_SUBMITS:
            return httpx.post(f"{base}{SUBMIT}", params={"steps": 1}, timeout=30).status_code
        return httpx.get(f"{base}{CHECK}", timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(N_SUBMITS + N_CHECKS)))
    assert statuses == [202] * N_SUBMITS + [200] * N_CHECKS

    def counts(s):  # type: ignore[no-untyped-def]
        return (
            value(s, "librarian_tasks_sent_total", task="librarian.demo.process", queue="default"),
            value(s, "librarian_http_requests_total", handler=SUBMIT, method="POST", status="2xx"),
            value(s, "librarian_http_requests_total", handler=CHECK, method="GET", status="2xx"),
            value(s, "librarian_http_request_duration_seconds_count", handler=SUBMIT, method="POST"),
            value(s, "librarian_http_request_duration_seconds_count", handler=CHECK, method="GET"),
        )

    expected = (N_SUBMITS, N_SUBMITS, N_CHECKS, N_SUBMITS, N_CHECKS)

    # The instrumentator counts a request once its response is sent: give the last ones a moment.
    def all_counted() -> bool:
        return all(seen >= wanted for seen, wanted in zip(counts(scrape(f"{base}/metrics")), expected, strict=True))

    with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
        wait_until(all_counted, timeout=10)
    for _ in range(SCRAPES):  # each on a new connection: answered by either process
        s = scrape(f"{base}/metrics")
        assert counts(s) == expected
        assert value(s, "librarian_queue_depth", queue="default") == N_SUBMITS  # the broker gauges too

    # Both processes served requests (else the test would prove nothing): each one's own file.
    directory = Path(os.environ["VAR_DIR"], "metrics", f"api-{urlsplit(base).port}")
    served = requests_per_process(directory, tmp_path)
    assert sum(served.values()) == N_SUBMITS + N_CHECKS, served
    assert len([n for n in served.values() if n > 0]) == 2, f"one process took every request: {served}"


def test_one_process_writes_its_metrics_to_its_directory(broker):
    """The default (no --workers): the same multiprocess path, this very process's files."""
    process, base = start_api("api-one-process", env=stack_env(REDIS_URL=broker.db_url(6)))
    try:
        for _ in range(3):
            assert httpx.post(f"{base}{SUBMIT}", params={"steps": 1}, timeout=30).status_code == 202
        s = scrape(f"{base}/metrics")
        assert value(s, "librarian_tasks_sent_total", task="librarian.demo.process", queue="default") == 3
        directory = Path(os.environ["VAR_DIR"], "metrics", f"api-{urlsplit(base).port}")
        assert (directory / f"counter_{process.pid}.db").exists(), sorted(p.name for p in directory.iterdir())
    finally:
        process.stop()
