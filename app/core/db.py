"""Database engine and sessions (SQLite by default, PostgreSQL in production: only the URL changes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TypeVar

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

import app.models  # noqa: F401  (registers the tables with SQLModel.metadata)
from app import migrations
from app.core.config import settings

log = structlog.get_logger("librarian.db")
T = TypeVar("T")

# How long a statement waits for a lock (SQLite busy_timeout, PostgreSQL lock_timeout) or for the
# server to accept a connection before OperationalError, and a request for a pooled connection before
# TimeoutError. Tasks retry the first; the API answers both 503 (app/api/errors.py): a held lock or a
# full pool never blocks a worker or a request for good.
LOCK_WAIT_S = 5


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    if settings.database_url.startswith("sqlite"):
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    return make_engine(settings.database_url)


def make_engine(url: str, *, lock_wait_s: int = LOCK_WAIT_S) -> Engine:
    """An engine for `url` whose statements give up on a held lock after `lock_wait_s`."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": lock_wait_s})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets the API read while a worker writes; busy_timeout waits on a lock, then fails.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={lock_wait_s * 1000}")
            cursor.close()

        return engine
    # PostgreSQL waits for a lock without end by default; `options` given in the URL are kept.
    options = " ".join(filter(None, [str(make_url(url).query.get("options") or ""), f"-c lock_timeout={lock_wait_s}s"]))
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=lock_wait_s,
        connect_args={"connect_timeout": lock_wait_s, "options": options},
    )


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
