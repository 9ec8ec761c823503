"""init_db() on a database an earlier release made: new nullable columns are added, rows kept."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from app.core.db import SchemaMismatch, add_missing_columns, init_db, with_startup_retries
from app.models import Batch, Part

OLD_SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "schema_before_rulesets.sql"
NEW_COLUMNS = {"part.ruleset_name", "part.ruleset_version", "batch.ruleset_name", "batch.ruleset_version"}


def old_database(path: Path) -> tuple[uuid.UUID, uuid.UUID]:
    """A SQLite file with the tables as they were before rulesets, one part and one batch in it."""
    part_id, batch_id = uuid.uuid4(), uuid.uuid4()
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA.read_text())
        db.execute(
            "INSERT INTO part (id, filename, storage_key, size_bytes, sha256, status, attempts, created_at, updated_at)"
            " VALUES (?, 'old.3dm', 'parts/x/old.3dm', 10, '', 'VALIDATED', 1,"
            " '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
            (part_id.hex,),
        )
        db.execute("INSERT INTO batch (id, total, created_at) VALUES (?, 3, '2025-01-01 00:00:00')", (batch_id.hex,))
    return part_id, batch_id


def test_an_old_database_gets_the_new_columns_and_keeps_its_rows(tmp_path):
    part_id, batch_id = old_database(tmp_path / "old.db")
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")

    init_db(engine)

    inspector = inspect(engine)
    columns = {f"{t}.{c['name']}": c for t in ("part", "batch") for c in inspector.get_columns(t)}
    assert set(columns) >= NEW_COLUMNS
    assert all(columns[name]["nullable"] for name in NEW_COLUMNS)
    assert "ruleset_version" in inspector.get_table_names()
    with Session(engine) as session:
        part, batch = session.get(Part, part_id), session.get(Batch, batch_id)
        assert (part.filename, part.ruleset_name, part.ruleset_version) == ("old.3dm", None, None)
        assert (batch.total, batch.ruleset_name) == (3, None)
        batch.ruleset_name, batch.ruleset_version = "default", 1
        session.add(batch)
        session.commit()
    assert add_missing_columns(engine) == []  # the next start-up has nothing to add


def test_a_missing_not_null_column_is_reported_not_guessed(tmp_path):
    with sqlite3.connect(tmp_path / "odd.db") as db:
        db.execute("CREATE TABLE batch (id CHAR(32) NOT NULL PRIMARY KEY, owner VARCHAR(100))")
    engine = create_engine(f"sqlite:///{tmp_path / 'odd.db'}")
    with pytest.raises(SchemaMismatch, match="batch lacks the NOT NULL column total"):
        add_missing_columns(engine)


def test_a_start_up_step_is_retried_while_another_process_holds_the_database(tmp_path) -> None:
    """`librarian up` starts the API and the worker at once; the loser of the race for a new SQLite
    database gets "database is locked" and must try again rather than log an error."""
    path = tmp_path / "race.db"
    holder = sqlite3.connect(path, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.8, holder.rollback).start()  # the other process finishes its start-up
    engine = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    calls = []

    def step() -> int:
        calls.append(1)
        with engine.begin() as connection:
            return connection.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)")).rowcount

    with_startup_retries(step, attempts=5, delay=0.3)
    assert len(calls) >= 2  # failed while locked, then went through
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(OperationalError, match="locked"):
        with_startup_retries(step, attempts=2, delay=0.01)
    holder.rollback()
