"""The tables as init_db() made them before rulesets (tests/fixtures/schema_before_rulesets.sql).

Revision ID: 0001_initial
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PART_STATUSES = ("UPLOADED", "QUEUED", "PROCESSING", "VALIDATED", "REJECTED", "FAILED")  # member names
ITEM_STATUSES = (
    *("pending", "queued", "preprocessing", "parsing", "classifying", "extracting", "validating", "publishing"),
    *("preprocessed", "parsed", "classified", "extracted", "validated", "published"),
    *("preprocess_failed", "parse_failed", "classify_failed", "extract_failed", "validate_failed", "publish_failed"),
)


def upgrade() -> None:
    op.create_table(
        "diagnostic_record",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=2000), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("writes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "part",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("storage_key", sa.String(length=400), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Enum(*PART_STATUSES, name="partstatus"), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("validation_report", sa.JSON(), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_part_sha256"), "part", ["sha256"], unique=False)
    op.create_index(op.f("ix_part_owner"), "part", ["owner"], unique=False)
    op.create_index(op.f("ix_part_status"), "part", ["status"], unique=False)
    op.create_table(
        "batch",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_batch_owner"), "batch", ["owner"], unique=False)
    op.create_table(
        "batch_item",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("storage_key", sa.String(length=400), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        # The enum's values in a VARCHAR(40), no CHECK constraint (app.models.BatchItem.status).
        sa.Column("status", sa.Enum(*ITEM_STATUSES, name="itemstatus", native_enum=False, length=40), nullable=False),
        sa.Column("failed_stage", sa.String(length=20), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("part_id", sa.Uuid(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_batch_item_status"), "batch_item", ["status"], unique=False)
    op.create_index(op.f("ix_batch_item_batch_id"), "batch_item", ["batch_id"], unique=False)


def downgrade() -> None:
    op.drop_table("batch_item")
    op.drop_table("batch")
    op.drop_table("part")
    op.drop_table("diagnostic_record")
    sa.Enum(name="partstatus").drop(op.get_bind(), checkfirst=True)
