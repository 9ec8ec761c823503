"""The error mapping without a server: a database that is locked, down or out of pooled connections
answers 503 `dependency: database`, never 500 (app/api/errors.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.api.errors import install_error_handlers

FAILURES = {
    "lock timeout": OperationalError("UPDATE part", {}, Exception("canceling statement due to lock timeout")),
    "server down": OperationalError("SELECT 1", {}, Exception("connection refused")),
    "pool exhausted": PoolTimeoutError("QueuePool limit of size 5 overflow 5 reached, connection timed out"),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_database_that_cannot_answer_is_503(failure: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/parts")
    def parts() -> None:
        raise failure

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return await client.get("/parts")

    answer = asyncio.run(get())
    assert (answer.status_code, answer.json()["dependency"]) == (503, "database")
    assert answer.headers["retry-after"] == "5"
