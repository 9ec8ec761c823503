"""Alembic migrations (app/migrations) on SQLite and on a real PostgreSQL (pgserver): every path an
existing database can take to head, and head equal to the models."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import Session, SQLModel

from app.migrations import INITIAL, RULESETS, upgrade
from app.models import Batch, Part
from tests.core.test_db import NEW_COLUMNS, old_database

HEAD = "0003_aware_timestamps"
TABLES = {"diagnostic_record", "part", "batch", "batch_item", "ruleset_version", "alembic_version"}


def columns(engine) -> set[str]:  # type: ignore[no-untyped-def]
    inspector = inspect(engine)
    return {f"{t}.{c['name']}" for t in ("part", "batch") for c in inspector.get_columns(t)}


def test_an_empty_database_is_upgraded_to_head(blank_database):
    assert upgrade(blank_database) == HEAD
    assert set(inspect(blank_database).get_table_names()) == TABLES
    assert upgrade(blank_database) == HEAD  # idempotent: every start-up runs it


def test_head_matches_the_models(blank_database):
    upgrade(blank_database)
    with blank_database.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_the_first_revision_is_upgraded_to_head_with_its_rows(blank_database):
    upgrade(blank_database, INITIAL)
    part_id = uuid.uuid4()
    with blank_database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO part (id, filename, storage_key, size_bytes, sha256, status, attempts, created_at,"
                " updated_at) VALUES (:id, 'a.3dm', 'k', 1, '', 'VALIDATED', 0, :at, :at)"
            ),
            {"id": part_id if blank_database.dialect.name == "postgresql" else part_id.hex, "at": datetime(2025, 1, 1)},
        )
    assert upgrade(blank_database) == HEAD
    assert columns(blank_database) >= NEW_COLUMNS
    with Session(blank_database) as session:
        part = session.get(Part, part_id)
        assert part.created_at == datetime(2025, 1, 1, tzinfo=UTC)  # the naive value was UTC


def test_a_database_from_before_migrations_is_stamped_then_upgraded(blank_database):
    """What init_db() made until migrations (create_all): tables, no alembic_version."""
    upgrade(blank_database, RULESETS)
    with blank_database.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(
            text("INSERT INTO batch (id, total, created_at) VALUES (:id, 2, :at)"),
            {
                "id": uuid.UUID(int=1) if blank_database.dialect.name == "postgresql" else uuid.UUID(int=1).hex,
                "at": datetime(2025, 6, 1, 12),
            },
        )
    assert upgrade(blank_database) == HEAD
    with Session(blank_database) as session:
        assert session.get(Batch, uuid.UUID(int=1)).created_at == datetime(2025, 6, 1, 12, tzinfo=UTC)


def test_a_sqlite_file_made_by_create_all_is_stamped_then_upgraded(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'made.db'}")
    SQLModel.metadata.create_all(engine)
    assert upgrade(engine) == HEAD
    assert set(inspect(engine).get_table_names()) == TABLES


def test_a_sqlite_file_from_before_rulesets_is_upgraded_with_its_rows(tmp_path):
    part_id, batch_id = old_database(tmp_path / "old.db")
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert upgrade(engine) == HEAD
    assert columns(engine) >= NEW_COLUMNS
    with Session(engine) as session:
        part, batch = session.get(Part, part_id), session.get(Batch, batch_id)
        assert (part.filename, part.ruleset_name, batch.total) == ("old.3dm", None, 3)
        assert part.updated_at == datetime(2025, 1, 1, tzinfo=UTC)


def test_processes_starting_together_take_turns(blank_database):
    """The API and a worker upgrade at start-up: an flock (SQLite) or an advisory lock (PostgreSQL)
    lets one upgrade while the others wait, then find nothing to do."""
    with ThreadPoolExecutor(3) as pool:
        engines = [create_engine(blank_database.url) for _ in range(3)]
        assert list(pool.map(upgrade, engines)) == [HEAD] * 3
