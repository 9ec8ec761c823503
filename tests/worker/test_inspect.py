"""`celery inspect` against the session's real worker: every command Flower and the runbook use answers.

Each command runs as the runbook writes it (`celery -A app.worker.celery_app inspect <cmd> --json`),
in a subprocess with the session's environment, so the reply has to survive the worker's JSON
encoding and the CLI's decoding. The worker must not log a "Control command error" for any of them
(an unencodable reply is logged there and never sent: the CLI then says "No nodes replied").
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import stack_env
from tests.utils.processes import ROOT

CELERY = str(Path(sys.executable).with_name("celery"))


def inspect(command: str, node: str) -> dict:
    """The JSON reply of `celery inspect <command>`, asked of `node` only."""
    argv = [CELERY, "-A", "app.worker.celery_app", "inspect", command, "--json", "-t", "5", "-d", node]
    result = subprocess.run(argv, cwd=ROOT, env=stack_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(argv[1:])} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def node(worker) -> str:
    return f"{worker.name}@{socket.gethostname()}"


@pytest.mark.integration
@pytest.mark.parametrize("command", ["ping", "stats", "active", "registered", "conf", "active_queues"])
def test_inspect_command_answers_from_the_worker(worker, node, command):
    log_start = len(worker.output())
    replies = inspect(command, node)
    assert list(replies) == [node], replies
    reply = replies[node]
    if command == "ping":
        assert reply == {"ok": "pong"}
    elif command == "stats":
        # The broker the worker is connected to, named by the URL's scheme, as Flower shows it.
        broker = reply["broker"]
        assert broker["transport"] == urlsplit(stack_env()["REDIS_URL"]).scheme, broker
        assert "password" not in broker
        assert reply["pool"]["max-concurrency"] == 2, reply["pool"]
    elif command == "active":
        assert isinstance(reply, list)
    elif command == "registered":
        assert "librarian.maintenance.health_check" in reply and "librarian.demo.process" in reply, reply
    elif command == "conf":
        assert reply["task_default_queue"] == "default"
        assert reply["broker_transport"] == "app.broker.transport:Transport", reply["broker_transport"]
    elif command == "active_queues":
        assert sorted(q["name"] for q in reply) == ["default", "maintenance", "pipeline", "validation"], reply
    assert "Control command error" not in worker.output()[log_start:], worker.tail()


@pytest.mark.integration
def test_worker_logged_no_control_command_error(worker, node):
    """After the app's own inspect client (what Flower uses) asks for everything Flower asks for."""
    from app.worker.celery_app import celery_app

    log_start = len(worker.output())
    inspector = celery_app.control.inspect(timeout=5, destination=[node])
    for method in ("stats", "active_queues", "registered", "scheduled", "active", "reserved", "revoked", "conf"):
        replies = getattr(inspector, method)()
        assert replies and node in replies, f"{method}: {replies}"
    assert "Control command error" not in worker.output()[log_start:], worker.tail()


@pytest.mark.parametrize(
    ("url", "cls_name"),
    [
        ("redis://:secret@127.0.0.1:6399/0", "Transport"),
        ("rediss://:secret@127.0.0.1:6399/0", "Transport"),
        ("sentinel://:secret@127.0.0.1:26379/0", "SentinelTransport"),
    ],
)
def test_connection_names_our_transport_by_the_url_scheme(url, cls_name):
    """No broker needed: what kombu puts in `stats` and in Flower's broker URI for each scheme."""
    import pickle

    from kombu.utils.json import dumps

    from app.broker import transport
    from app.worker.celery_app import LibrarianAMQP

    scheme = url.split("://", 1)[0]
    conn = LibrarianAMQP.Connection(url, transport=transport.transport_for(url))
    assert conn.get_transport_cls() is getattr(transport, cls_name)
    info = conn.info()
    assert info["transport"] == scheme
    dumps(info)  # the stats reply's `broker` part encodes
    assert conn.as_uri(include_password=True) == url  # Flower's Broker page picks its client by this scheme
    assert conn.clone().get_transport_cls() is getattr(transport, cls_name)
    assert pickle.loads(pickle.dumps(conn)).get_transport_cls() is getattr(transport, cls_name)
