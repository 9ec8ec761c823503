"""Rulesets: the `ruleset_version` table, and the ruleset each part and batch was submitted with.

Revision ID: 0002_rulesets
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_rulesets"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("part", "batch"):
        op.add_column(table, sa.Column("ruleset_name", sa.String(length=64), nullable=True))
        op.add_column(table, sa.Column("ruleset_version", sa.Integer(), nullable=True))
    op.create_table(
        "ruleset_version",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version"),
    )


def downgrade() -> None:
    op.drop_table("ruleset_version")
    for table in ("batch", "part"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("ruleset_version")
            batch_op.drop_column("ruleset_name")
