"""Timezone-aware timestamps: `timestamptz` on PostgreSQL (values were written as UTC).

SQLite has no time zone type: its columns stay as they are, naive UTC text, which
app.models.UTCDateTime reads as aware UTC.

Revision ID: 0003_aware_timestamps
Revises: 0002_rulesets
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_aware_timestamps"
down_revision: str | Sequence[str] | None = "0002_rulesets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPS = {
    "diagnostic_record": ("updated_at",),
    "part": ("created_at", "updated_at"),
    "batch": ("created_at",),
    "batch_item": ("updated_at",),
    "ruleset_version": ("created_at",),
}


def _retype(aware: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, columns in TIMESTAMPS.items():
        for column in columns:
            op.alter_column(
                table,
                column,
                type_=sa.DateTime(timezone=aware),
                existing_type=sa.DateTime(timezone=not aware),
                existing_nullable=False,
                postgresql_using=f"{column} AT TIME ZONE 'UTC'",
            )


def upgrade() -> None:
    _retype(aware=True)


def downgrade() -> None:
    _retype(aware=False)
