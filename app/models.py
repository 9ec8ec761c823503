"""SQLModel tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class DiagnosticRecord(SQLModel, table=True):
    """A row written by diagnostic tasks: proves a worker can reach the database (upserted by key)."""

    __tablename__ = "diagnostic_record"

    key: str = Field(primary_key=True, max_length=200)
    value: str = Field(default="", max_length=2000)
    task_id: str | None = Field(default=None, max_length=64)
    writes: int = 0
    updated_at: datetime = Field(default_factory=utcnow)
