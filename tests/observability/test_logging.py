"""The per-task lines' direct path (app/observability/logging.py: direct_logger) writes what the
stdlib path writes: same keys, same stream, same level rules. Each case runs in a fresh process
(configure_logging changes process-wide state)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import structlog
from app.observability.logging import configure_logging, direct_logger
configure_logging("worker")
structlog.contextvars.bind_contextvars(task_id="t-1", task_name="x.y", queue="default", retries=0, request_id="r-1")
direct, stdlib = direct_logger("librarian.task"), structlog.get_logger("librarian.other")
for log in (direct, stdlib):
    log.debug("quiet", where=log is direct)
    log.info("task succeeded", runtime_s=0.25, password="hunter2", where=log is direct)
try:
    raise ValueError("boom")
except ValueError as exc:
    direct.error("task failed", exc_info=(type(exc), exc, exc.__traceback__))
"""


def run(level: str) -> list[dict]:
    env = {**os.environ, "LOG_FORMAT": "json", "LOG_LEVEL": level, "LIBRARIAN_PROCESS": "worker", "SENTRY_DSN": ""}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_a_direct_line_has_the_keys_and_masking_of_a_stdlib_line():
    lines = run("INFO")
    direct = next(line for line in lines if line["event"] == "task succeeded" and line["where"])
    stdlib = next(line for line in lines if line["event"] == "task succeeded" and not line["where"])
    assert set(direct) == set(stdlib)
    assert direct["logger"] == "librarian.task" and direct["level"] == "info" and direct["service"] == "worker"
    assert (direct["task_id"], direct["request_id"], direct["runtime_s"]) == ("t-1", "r-1", 0.25)
    assert direct["password"] == "***"


def test_debug_lines_follow_the_level():
    assert [line for line in run("INFO") if line["event"] == "quiet"] == []
    quiet = [line for line in run("DEBUG") if line["event"] == "quiet"]
    assert sorted(line["where"] for line in quiet) == [False, True]


def test_a_failure_line_carries_its_traceback():
    failed = next(line for line in run("INFO") if line["event"] == "task failed")
    assert failed["level"] == "error"
    assert failed["exception"][0]["exc_type"] == "ValueError"
    assert failed["exception"][0]["frames"], "no frames rendered"
