"""Small HTTP helpers for integration tests: upload a model, wait for a part or a batch to finish."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, select

from app.core.db import get_engine
from app.models import BatchItem

FINISHED = {"validated", "rejected", "failed"}


def upload(http: httpx.Client, path: Path, name: str | None = None, **kwargs: Any) -> httpx.Response:
    """POST /api/v1/parts with the file under `name` (default: its own name)."""
    with path.open("rb") as handle:
        return http.post(
            "/api/v1/parts", files={"file": (name or path.name, handle, "application/octet-stream")}, **kwargs
        )


def wait_finished(http: httpx.Client, part_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/api/v1/parts/{part_id}").json()
        if body["status"] in FINISHED:
            return body
        time.sleep(0.1)
    raise AssertionError(f"part {part_id} stuck in {body['status']}")


def report_of(http: httpx.Client, part_id: str) -> dict[str, Any]:
    answer = http.get(f"/api/v1/parts/{part_id}/report")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_batch_done(http: httpx.Client, batch_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/api/v1/batches/{batch_id}").json()
        if body["done"] == body["total"]:
            return body
        time.sleep(0.2)
    raise AssertionError(f"batch never finished: {body}")


def batch_items(batch_id: str) -> list[BatchItem]:
    with Session(get_engine()) as session:
        return list(session.exec(select(BatchItem).where(BatchItem.batch_id == uuid.UUID(str(batch_id)))).all())
