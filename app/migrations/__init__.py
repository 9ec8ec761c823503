"""Schema migrations (Alembic): the environment and revisions ship inside the package, and the Alembic
configuration is built here from settings.database_url (no alembic.ini).

`upgrade()` brings a database to the latest revision; `librarian migrate`, `librarian up`, and the
API and worker start-ups all call it (through app.core.db.init_db). A database made before
migrations (tables, no `alembic_version`) is first stamped with the revision its tables match.

A new revision: upgrade an empty database to head, autogenerate against it, then review the file
(hand-edit types to plain SQLAlchemy ones: `sa.String`, `sa.DateTime(timezone=True)`):

    export DATABASE_URL=sqlite:////tmp/head.db
    librarian migrate
    python -c "from alembic import command; from app.migrations import alembic_config; \
        command.revision(alembic_config(), 'what changes', autogenerate=True)"
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

log = structlog.get_logger("librarian.db")
HERE = Path(__file__).resolve().parent
INITIAL = "0001_initial"  # the tables as init_db() made them before rulesets
RULESETS = "0002_rulesets"  # + ruleset columns and table: what init_db() made until migrations
RULESET_COLUMNS = {"part": {"ruleset_name", "ruleset_version"}, "batch": {"ruleset_name", "ruleset_version"}}
# Any fixed 64-bit key: PostgreSQL's advisory lock held while one process upgrades.
ADVISORY_LOCK_KEY = 0x4C49_4252_4D49_4752  # "LIBRMIGR"


class _WithoutContextLines(logging.Filter):
    """Alembic names its dialect each time a migration context is made (several per start-up of
    every process): keep those lines out of the log; "Running upgrade ..." lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_WithoutContextLines())


def alembic_config() -> Config:
    """Alembic's configuration in code: the scripts ship in this package (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def revision_of_unversioned(connection: Connection) -> str | None:
    """The revision a database made before migrations matches (None: no tables of ours)."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if "part" not in tables:
        return None
    has_rulesets = "ruleset_version" in tables and all(
        wanted <= {c["name"] for c in inspector.get_columns(table)} for table, wanted in RULESET_COLUMNS.items()
    )
    return RULESETS if has_rulesets else INITIAL


@contextmanager
def _one_at_a_time(engine: Engine) -> Iterator[None]:
    """Serialise upgrades between processes on one SQLite file (PostgreSQL: see upgrade())."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade to `revision` (idempotent) and return the database's revision afterwards.

    Processes that start together take turns: on PostgreSQL a transaction-level advisory lock
    (released at commit, even if the process dies) around the whole upgrade, which runs in one
    transaction (DDL is transactional there); on SQLite an flock on a file next to the database.
    """
    config = alembic_config()
    with _one_at_a_time(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Upgrades wait for each other however long one takes: not the app's lock_timeout (app/core/db.py).
            connection.execute(text("SET LOCAL lock_timeout = 0"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        config.attributes["connection"] = connection
        if current_revision(connection) is None:
            found = revision_of_unversioned(connection)
            if found is not None:
                log.info("database made before migrations: stamped", revision=found)
                command.stamp(config, found)
        command.upgrade(config, revision)
        return current_revision(connection)
