"""`librarian probe worker`: the Kubernetes exec liveness probe of a worker (ops/k8s/worker.yaml).

Exit 0 when this host's heartbeat key is there and fresh, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import redis

from app.broker import keys
from tests.utils.processes import cli


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli("probe", "worker", *args), env=env or dict(os.environ), capture_output=True, text=True, timeout=30
    )


def test_probe_passes_for_a_running_worker(worker):
    done = probe("--name", f"{worker.name}@%h")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == done.stdout.strip().splitlines()[0]  # one line
    assert f"worker {worker.name}@{socket.gethostname()}: alive" in done.stdout


def test_probe_fails_without_a_worker(broker):
    done = probe("--name", "nobody@%h")
    assert done.returncode == 1
    assert f"worker nobody@{socket.gethostname()}: no heartbeat" in done.stdout


def test_probe_fails_on_a_stale_heartbeat(broker):
    url = broker.db_url(11)  # a database of its own: the session's workers never see this key
    node = f"stale@{socket.gethostname()}"
    client = redis.Redis.from_url(url, socket_timeout=5)
    client.set(keys.WORKER.format(hostname=node), json.dumps({"timestamp": time.time() - 60}), ex=60)
    done = probe("--name", "stale@%h", "--max-age", "15", env={**os.environ, "REDIS_URL": url})
    assert done.returncode == 1, done.stdout
    assert "heartbeat stale (60." in done.stdout


def test_probe_fails_when_redis_is_unreachable(broker):
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_SOCKET_TIMEOUT": "0.5"}
    done = probe(env=env)
    assert done.returncode == 1
    assert "heartbeat unreadable: ConnectionError" in done.stdout
