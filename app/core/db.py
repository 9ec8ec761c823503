"""Database engine and sessions (SQLite by default, PostgreSQL in production: only the URL changes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

import structlog
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import Session, SQLModel, create_engine

import app.models  # noqa: F401  (registers the tables with SQLModel.metadata)
from app.core.config import settings

log = structlog.get_logger("librarian.db")
T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the API read while a worker writes; busy_timeout waits on a lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def with_startup_retries(step: Callable[[], T], *, attempts: int = 5, delay: float = 0.5) -> T:
    """Run a start-up database step, retried on OperationalError. Processes that start together
    (`librarian up` starts the API and the worker at once) race to create a new database: SQLite
    answers "database is locked" or "table ... already exists" to the loser. The last error is
    raised."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except OperationalError:
            if attempt == attempts:
                raise
            time.sleep(delay * attempt)
    raise AssertionError("unreachable")


def init_db(engine: Engine | None = None) -> None:
    """Create the tables that do not exist yet and add missing nullable columns to those that do
    (idempotent; runs at API and worker start-up)."""
    engine = engine or get_engine()
    SQLModel.metadata.create_all(engine)
    add_missing_columns(engine)


class SchemaMismatch(RuntimeError):
    """A table lacks a column that cannot be added without a migration (NOT NULL, no default)."""


def add_missing_columns(engine: Engine) -> list[str]:
    """ALTER TABLE … ADD COLUMN for every model column an existing table lacks; returns them.

    Stands in for migrations until they arrive (issue #15): create_all() makes new tables but never
    changes existing ones, so a column added to a model (nullable, as every new column must be
    until then) would be missing from a database made by an earlier release. Plain `ALTER TABLE …
    ADD COLUMN name TYPE`, which SQLite and PostgreSQL both accept (tested on SQLite). Two processes
    starting together may both try: a column the other one added counts as added.
    """
    added: list[str] = []
    existing_tables = set(inspect(engine).get_table_names())
    for table in SQLModel.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        present = {column["name"] for column in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise SchemaMismatch(
                    f"table {table.name} lacks the NOT NULL column {column.name}: this database needs a migration"
                )
            quote = engine.dialect.identifier_preparer.quote
            ddl = (
                f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} "
                f"{column.type.compile(dialect=engine.dialect)}"
            )
            try:
                with engine.begin() as connection:
                    connection.execute(text(ddl))
            except DatabaseError:
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                continue  # another process added it first
            log.info("column added", table=table.name, column=column.name)
            added.append(f"{table.name}.{column.name}")
    return added


@contextmanager
def session_scope() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session


def ping_db() -> None:
    with session_scope() as session:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
