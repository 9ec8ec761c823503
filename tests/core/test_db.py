"""init_db() (the migrations, tests/core/test_migrations.py) on a database an earlier release made,
start-up retries, lock waits, concurrent writes, and timestamps that come back aware UTC on every backend."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from app import crud
from app.core.config import Settings
from app.core.db import init_db, make_engine, with_startup_retries
from app.models import Batch, DiagnosticRecord, Part

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
    assert init_db(engine) == "0003_aware_timestamps"  # the next start-up has nothing to do


def test_timestamps_come_back_aware_utc(blank_database):
    """SQLite has no time zone type; app.models.UTCDateTime makes both backends answer alike."""
    init_db(blank_database)
    written = datetime(2026, 3, 1, 14, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    with Session(blank_database) as session:
        session.add(DiagnosticRecord(key="tz", updated_at=written))
        session.commit()
    with Session(blank_database) as session:
        read = session.get(DiagnosticRecord, "tz").updated_at
    assert (read, read.tzinfo) == (written, UTC)
    with Session(blank_database) as session:
        session.add(DiagnosticRecord(key="naive", updated_at=datetime(2026, 3, 1)))
        with pytest.raises(sqlalchemy.exc.StatementError, match="naive"):
            session.commit()


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


def test_a_write_waiting_on_a_held_lock_fails_after_the_lock_wait(blank_database):
    """SQLite's busy_timeout and PostgreSQL's lock_timeout (which waits for good by default) end the
    wait with OperationalError: tasks retry it and the API answers 503 (tests/reliability/test_database_lock.py)."""
    init_db(blank_database)
    engine = make_engine(blank_database.url.render_as_string(hide_password=False), lock_wait_s=1)
    with engine.connect():
        pass  # connected (and SQLite's pragmas set) before the lock is taken
    with blank_database.connect() as holder:
        if holder.dialect.name == "sqlite":
            holder.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            holder.execute(text("LOCK TABLE diagnostic_record IN ACCESS EXCLUSIVE MODE"))
        with Session(engine) as session:
            session.add(DiagnosticRecord(key="waits", updated_at=datetime.now(UTC)))
            started = time.monotonic()
            with pytest.raises(OperationalError, match=r"locked|lock timeout"):
                session.commit()
            waited = time.monotonic() - started
        holder.rollback()
    engine.dispose()
    assert 0.9 < waited < 3, waited


def test_diagnostic_writes_at_once_all_count(blank_database):
    """The reliability scenarios count a task's runs in diagnostic records (crud.record_write): runs
    that write at once must neither lose a count nor fail on the key's first insert."""
    init_db(blank_database)
    errors: list[Exception] = []

    def writer() -> None:
        for _ in range(25):
            try:
                with Session(blank_database) as session:
                    crud.record_write(session, key="race", value="v", task_id="t")
            except Exception as exc:  # noqa: BLE001 (collected and asserted below)
                errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Session(blank_database) as session:
        assert (session.get(DiagnosticRecord, "race").writes, errors) == (100, [])


def test_a_plain_postgresql_url_uses_psycopg_3():
    url = Settings(DATABASE_URL="postgresql://u:pw@db:5432/librarian").database_url
    assert url == "postgresql+psycopg://u:pw@db:5432/librarian"
