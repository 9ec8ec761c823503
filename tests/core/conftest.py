"""`blank_database`: the URL of a new, empty database on SQLite and on a real PostgreSQL (pgserver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from tests.utils.postgres import new_database


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'blank.db'}"
    else:
        url = new_database(request.getfixturevalue("pg_server"), "blank")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
