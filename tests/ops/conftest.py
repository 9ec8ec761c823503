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
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.utils.browser import chromium_path, require  # the finder, shared with tests/ui

from .helpers import ROOT


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
    return chromium_path()


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
