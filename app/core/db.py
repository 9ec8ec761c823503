"""Database engine and sessions (SQLite by default, PostgreSQL in production: only the URL changes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

import app.models  # noqa: F401  (registers the tables with SQLModel.metadata)
from app import migrations
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
    (a worker and the API) may find the database locked or not up yet. The last error is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return step()
        except OperationalError:
            if attempt == attempts:
                raise
            time.sleep(delay * attempt)
    raise AssertionError("unreachable")


def init_db(engine: Engine | None = None) -> str | None:
    """Upgrade the database to the latest migration (app/migrations) and return its revision.

    Idempotent; runs in `librarian migrate`, before `librarian up` starts anything, and at API and
    worker start-up (inside with_startup_retries). A database made before migrations is stamped
    with the revision its tables match, then upgraded. Concurrent callers take turns (an advisory
    lock on PostgreSQL, a file lock on SQLite).
    """
    engine = engine or get_engine()
    revision = migrations.upgrade(engine)
    log.info("database migrated", revision=revision)
    return revision


@contextmanager
def session_scope() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session


def ping_db() -> None:
    with session_scope() as session:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
