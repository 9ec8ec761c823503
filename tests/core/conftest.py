"""`blank_database`: the URL of a new, empty database on SQLite and on a real PostgreSQL (pgserver)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine


def new_postgres_database(server) -> str:  # type: ignore[no-untyped-def]
    """A new database on the pgserver; its psycopg 3 URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name};")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    base, query = uri.split("?", 1)
    return f"{base.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://')}/{name}?{query}"


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'blank.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("pg_server"))
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
