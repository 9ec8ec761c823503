"""Alembic's environment: run by `app.migrations.upgrade()` with an open connection (no alembic.ini),
or on settings.database_url when a new revision is written (see app/migrations/__init__.py)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers the tables with SQLModel.metadata)
from app.core.config import settings

config = context.config
target_metadata = SQLModel.metadata


def run_on(connection: Connection) -> None:
    # render_as_batch: SQLite alters a table by copying it (Alembic's batch mode).
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = config.attributes.get("connection")
    if context.is_offline_mode():  # `alembic upgrade --sql`: print the DDL
        context.configure(url=settings.database_url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    elif connection is not None:  # app.migrations.upgrade(): its connection, transaction and lock
        run_on(connection)
    else:
        with create_engine(settings.database_url).begin() as own:
            run_on(own)


run()
