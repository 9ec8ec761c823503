"""`librarian batches retry ID` against the real API and worker: the same re-drive as
POST /api/v1/batches/{id}/retry, and a clear exit 1 for a batch that does not exist."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.utils.api import batch_items, wait_batch_done
from tests.utils.processes import ROOT, free_port

pytestmark = pytest.mark.integration


def librarian(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_retry_sends_the_dead_lettered_items_again(api, http, worker, models):
    files = [
        ("files", (name, models[fixture].read_bytes(), "application/octet-stream"))
        for name, fixture in (("good.3dm", "valid_part"), ("bad.3dm", "not_3dm"))
    ]
    batch_id = http.post("/api/v1/batches", files=files).json()["batch_id"]
    wait_batch_done(http, batch_id)
    assert {i.filename: (i.status, i.attempts) for i in batch_items(batch_id)} == {
        "good.3dm": ("published", 1),
        "bad.3dm": ("preprocess_failed", 1),
    }

    result = librarian("batches", "retry", batch_id, "--api", api.base_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"batch {batch_id}: 1 item sent again\n"
    wait_batch_done(http, batch_id)
    # Only the dead-lettered item ran again (and, still not a model, failed again).
    assert {i.filename: (i.status, i.attempts) for i in batch_items(batch_id)} == {
        "good.3dm": ("published", 1),
        "bad.3dm": ("preprocess_failed", 2),
    }
    again = librarian("batches", "retry", batch_id, "--api", api.base_url, "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"batch_id": batch_id, "retried": 1}


def test_an_unknown_batch_exits_1_saying_so(api):
    batch_id = str(uuid.uuid4())
    result = librarian("batches", "retry", batch_id, "--api", api.base_url)
    assert result.returncode == 1
    assert result.stderr.strip() == f"librarian: unknown batch {batch_id}"
    assert result.stdout == ""


def test_a_malformed_id_or_an_unreachable_api_exits_1_with_the_reason():
    malformed = librarian("batches", "retry", "batch-42")
    assert malformed.returncode == 1
    assert "not a batch id: 'batch-42'" in malformed.stderr
    unreachable = librarian("batches", "retry", str(uuid.uuid4()), "--api", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1
    assert "API unreachable" in unreachable.stderr
