"""Fixtures for the ops tests: the paths of the project and of the Prometheus tool binaries.

promtool/prometheus come from the Debian package `prometheus`, amtool from
`prometheus-alertmanager`, redis_exporter from `prometheus-redis-exporter`, the headless
browser from `chromium`. A missing binary is installed with apt-get when running as root;
otherwise the tests that need it are skipped with the reason, or FAIL when CI=true.

`live_stack` starts a worker, an API and Flower on a Redis database of their own (the live
Prometheus and Flower tests use it); everything it started is stopped at teardown.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _which(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    fallback = Path("/usr/bin") / binary
    return str(fallback) if os.access(fallback, os.X_OK) else None


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


@functools.cache
def _apt_get(*args: str) -> str:
    """Run apt-get once per argument list; return '' on success, else why it failed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`apt-get {' '.join(args)}` could not run: {exc}"
    if result.returncode:
        return f"`apt-get {' '.join(args)}` exited {result.returncode}: {_tail(result.stderr)}"
    return ""


@functools.cache
def find_or_install(binary: str, apt_package: str) -> tuple[str | None, str]:
    """Return (path, '') or (None, reason)."""
    found = _which(binary)
    if found:
        return found, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, f"not on PATH nor in /usr/bin, and not root, so `apt-get install {apt_package}` was not tried"
    if not shutil.which("apt-get"):
        return None, f"not on PATH nor in /usr/bin, and there is no apt-get to install `{apt_package}`"
    print(f"\n[tests/ops] {binary} missing: apt-get install -y {apt_package} ...", file=sys.stderr)
    error = _apt_get("update") or _apt_get("install", "-y", "--no-install-recommends", apt_package)
    if error:
        return None, error
    found = _which(binary)
    return (found, "") if found else (None, f"`apt-get install {apt_package}` succeeded but {binary} is still missing")


def require(binary: str, apt_package: str) -> str:
    path, reason = find_or_install(binary, apt_package)
    if path:
        return path
    message = f"{binary} not found and could not be installed: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: the ops tests must run in CI)", pytrace=False)
    pytest.skip(f"{message}. THESE OPS TESTS DID NOT RUN; install the Debian package `{apt_package}`.")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus_server() -> str:
    """The `prometheus` server binary (same Debian package as promtool)."""
    return require("prometheus", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require("amtool", "prometheus-alertmanager")


@pytest.fixture(scope="session")
def redis_exporter() -> str:
    """oliver006/redis_exporter, as Debian packages it."""
    return require("prometheus-redis-exporter", "prometheus-redis-exporter")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's `chromium` (run headless by the Flower browser test)."""
    return require("chromium", "chromium")


# --------------------------------------------------------------------------- live stack
@dataclass
class LiveStack:
    """A worker, an API and Flower on their own Redis database, plus a Celery producer on it."""

    url: str
    env: dict[str, str]
    worker: Any  # ManagedProcess, with .metrics_url
    api: Any
    api_url: str
    flower: Any
    flower_url: str
    flower_auth: tuple[str, str]
    flower_metrics_auth: tuple[str, str]  # the second account, as compose gives Prometheus
    producer: Any
    log_dir: Path


@pytest.fixture
def live_stack(broker) -> Iterator[Callable[..., LiveStack]]:
    """live_stack(db) starts worker + API + Flower on Redis database `db` (flushed first)."""
    from celery import Celery

    from tests.conftest import TMP, stack_env
    from tests.utils.processes import ManagedProcess, cli, free_port, wait_http

    started: list[ManagedProcess] = []
    producers: list[Celery] = []

    def start(db: int, worker_extra: tuple[str, ...] = ()) -> LiveStack:  # extra `librarian worker` args
        url = broker.db_url(db)  # flushed: no heartbeats, results or messages of an earlier run
        tag = secrets.token_hex(3)
        flower_user, flower_password = "ops", secrets.token_hex(12)
        metrics_password = secrets.token_hex(12)
        env = stack_env(
            REDIS_URL=url,
            FLOWER_USER=flower_user,
            FLOWER_PASSWORD=flower_password,
            FLOWER_BASIC_AUTH=f"prometheus:{metrics_password}",
        )
        log_dir = TMP / "logs"
        worker_env = {**env, "WORKER_METRICS_PORT": str(free_port())}
        worker = ManagedProcess(
            f"ops-worker-{tag}", cli("worker", "--name", f"ops{tag}@%h", *worker_extra), worker_env, log_dir
        )
        worker.metrics_url = f"http://127.0.0.1:{worker_env['WORKER_METRICS_PORT']}/metrics"
        api_port, flower_port = free_port(), free_port()
        api = ManagedProcess(f"ops-api-{tag}", cli("api", "--port", str(api_port)), env, log_dir)
        flower = ManagedProcess(f"ops-flower-{tag}", cli("flower", "--port", str(flower_port)), env, log_dir)
        # Registered before they start: a failed start-up is still stopped at teardown.
        for process in (worker, api, flower):
            started.append(process)
            process.start()
        worker.wait_for(r'"event": "worker ready"', timeout=90)
        worker.wait_for(r'"event": "worker metrics listening"', timeout=30)
        api_url, flower_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{flower_port}"
        wait_http(f"{api_url}/health", timeout=90, process=api)
        wait_http(f"{flower_url}/healthcheck", timeout=90, process=flower)

        from app.worker.celery_app import celery_app

        producer = Celery(f"ops-producer-{tag}", set_as_current=False)
        producer.conf.update(celery_app.conf.table(with_defaults=False))
        producer.conf.update(broker_url=url, result_backend=url)
        producers.append(producer)
        return LiveStack(
            url=url,
            env=env,
            worker=worker,
            api=api,
            api_url=api_url,
            flower=flower,
            flower_url=flower_url,
            flower_auth=(flower_user, flower_password),
            flower_metrics_auth=("prometheus", metrics_password),
            producer=producer,
            log_dir=log_dir,
        )

    try:
        yield start
    finally:
        for producer in producers:
            with contextlib.suppress(Exception):
                producer.close()
        for process in reversed(started):
            process.stop()
