"""Diagnostic records: one row per key, counting the writes of the tasks that prove the stack works."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from app.models import DiagnosticRecord, utcnow


def record_write(session: Session, *, key: str, value: str, task_id: str | None) -> int:
    """Upsert the row `key` and add one to its `writes`, in one statement; returns the new count.

    A read-then-write loses counts when two runs of a task write at once (a redelivery while the
    first run still works), and the later of two first inserts of a key fails on the primary key,
    on SQLite and on PostgreSQL alike: the reliability scenarios count runs with these rows.
    """
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    new = insert(DiagnosticRecord).values(key=key, value=value, task_id=task_id, writes=1, updated_at=now)
    statement = new.on_conflict_do_update(
        index_elements=[col(DiagnosticRecord.key)],
        set_={"value": value, "task_id": task_id, "writes": col(DiagnosticRecord.writes) + 1, "updated_at": now},
    ).returning(col(DiagnosticRecord.writes))
    writes = session.execute(statement).scalar_one()
    session.commit()
    return int(writes)
