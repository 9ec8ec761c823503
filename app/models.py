"""SQLModel tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Dialect, TypeDecorator
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that takes aware datetimes only and returns aware UTC on every backend.

    PostgreSQL stores `timestamptz` and returns aware values, but SQLite has no time zone type:
    SQLAlchemy's SQLite DateTime drops the offset when storing and returns naive datetimes even for
    `timezone=True` (neither SQLAlchemy nor SQLModel offers a UTC type for it). So values are
    converted to UTC before they are stored (SQLite keeps naive UTC text, as earlier releases did)
    and marked UTC when read. A naive value is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use an aware one (datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DiagnosticRecord(SQLModel, table=True):
    """A row written by diagnostic tasks: proves a worker can reach the database (upserted by key)."""

    __tablename__ = "diagnostic_record"

    key: str = Field(primary_key=True, max_length=200)
    value: str = Field(default="", max_length=2000)
    task_id: str | None = Field(default=None, max_length=64)
    writes: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PartStatus(StrEnum):
    """uploaded → queued → processing → validated | rejected | failed"""

    UPLOADED = "uploaded"
    QUEUED = "queued"
    PROCESSING = "processing"
    VALIDATED = "validated"  # read and checked: no error findings
    REJECTED = "rejected"  # unreadable, or the report has error findings
    FAILED = "failed"  # could not be checked (dependency down after retries, time limit, ...)


FINISHED_STATUSES = {PartStatus.VALIDATED, PartStatus.REJECTED, PartStatus.FAILED}


class Part(SQLModel, table=True):
    """An uploaded Rhino model (the seed's "block") and its validation outcome."""

    __tablename__ = "part"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    filename: str = Field(max_length=255, description="the name the client sent (display only)")
    storage_key: str = Field(max_length=400, description="sanitized path under the storage dir")
    size_bytes: int = 0
    sha256: str = Field(default="", max_length=64, index=True)
    status: PartStatus = Field(default=PartStatus.UPLOADED, index=True)
    owner: str | None = Field(default=None, max_length=100, index=True)
    validation_report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    task_id: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    error: str | None = Field(default=None, max_length=2000)
    # The ruleset chosen at the last submit (the report names the version that ran).
    ruleset_name: str | None = Field(default=None, max_length=64)
    ruleset_version: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


PIPELINE_STAGES = ("preprocess", "parse", "classify", "extract", "validate", "publish")


class ItemStatus(StrEnum):
    """A batch item: pending (stored, not sent yet) → queued → for each stage in turn, its running
    status (`preprocessing`, set when the stage starts and kept while it waits for a retry) then
    its done status (`preprocessed`) → published; or `<stage>_failed`, the dead-letter state, from
    which POST /retry resends it."""

    PENDING = "pending"
    QUEUED = "queued"
    PREPROCESSING = "preprocessing"
    PARSING = "parsing"
    CLASSIFYING = "classifying"
    EXTRACTING = "extracting"
    VALIDATING = "validating"
    PUBLISHING = "publishing"
    PREPROCESSED = "preprocessed"
    PARSED = "parsed"
    CLASSIFIED = "classified"
    EXTRACTED = "extracted"
    VALIDATED = "validated"
    PUBLISHED = "published"
    PREPROCESS_FAILED = "preprocess_failed"
    PARSE_FAILED = "parse_failed"
    CLASSIFY_FAILED = "classify_failed"
    EXTRACT_FAILED = "extract_failed"
    VALIDATE_FAILED = "validate_failed"
    PUBLISH_FAILED = "publish_failed"


STAGE_RUNNING = {  # the item status while a stage runs (or waits for its next retry)
    "preprocess": ItemStatus.PREPROCESSING,
    "parse": ItemStatus.PARSING,
    "classify": ItemStatus.CLASSIFYING,
    "extract": ItemStatus.EXTRACTING,
    "validate": ItemStatus.VALIDATING,
    "publish": ItemStatus.PUBLISHING,
}
STAGE_DONE = {  # the item status once a stage has finished
    "preprocess": ItemStatus.PREPROCESSED,
    "parse": ItemStatus.PARSED,
    "classify": ItemStatus.CLASSIFIED,
    "extract": ItemStatus.EXTRACTED,
    "validate": ItemStatus.VALIDATED,
    "publish": ItemStatus.PUBLISHED,
}
STAGE_FAILED = {stage: ItemStatus(f"{stage}_failed") for stage in PIPELINE_STAGES}
FAILED_ITEM_STATUSES = frozenset(STAGE_FAILED.values())
# An item is done once published or dead-lettered (until a retry sends it again).
FINISHED_ITEM_STATUSES = FAILED_ITEM_STATUSES | {ItemStatus.PUBLISHED}
# Not sent to a worker yet, or waiting in a queue: a batch whose items are all here has not started.
WAITING_ITEM_STATUSES = frozenset({ItemStatus.PENDING, ItemStatus.QUEUED})


class BatchState(StrEnum):
    """A batch as a whole, from its items' statuses (app.crud.batches.batch_progress)."""

    QUEUED = "queued"  # no item has started a stage yet
    RUNNING = "running"  # some item started, not every item is finished
    COMPLETED = "completed"  # every item published
    COMPLETED_WITH_FAILURES = "completed_with_failures"  # every item finished, some dead-lettered


class Batch(SQLModel, table=True):
    """A staged import of many models: one item per uploaded file."""

    __tablename__ = "batch"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner: str | None = Field(default=None, max_length=100, index=True)
    total: int = 0
    # The ruleset version fixed at submit time; the `validate` stage of every item uses it
    # (None: a batch from before rulesets, validated with the latest default).
    ruleset_name: str | None = Field(default=None, max_length=64)
    ruleset_version: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BatchItem(SQLModel, table=True):
    """One file going through the pipeline; `status` is an ItemStatus."""

    __tablename__ = "batch_item"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    batch_id: uuid.UUID = Field(foreign_key="batch.id", index=True)
    filename: str = Field(max_length=255)
    storage_key: str = Field(max_length=400)
    size_bytes: int = 0
    sha256: str = Field(default="", max_length=64)
    # Stored as the enum's values in a VARCHAR(40), as when it was a plain string (SQLModel's
    # default for an enum would store the member names, e.g. "QUEUED").
    status: ItemStatus = Field(
        default=ItemStatus.QUEUED,
        sa_column=Column(
            SAEnum(ItemStatus, native_enum=False, length=40, values_callable=lambda e: [m.value for m in e]),
            nullable=False,
            index=True,
        ),
    )
    failed_stage: str | None = Field(default=None, max_length=20)
    error: str | None = Field(default=None, max_length=2000)
    attempts: int = 0
    outputs: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    part_id: uuid.UUID | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RulesetVersion(SQLModel, table=True):
    """One version of a named ruleset (app/core/rulesets.py). Rows are never changed nor deleted:
    a report names (name, version), and that version stays readable."""

    __tablename__ = "ruleset_version"

    name: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    sha256: str = Field(max_length=64)
    content: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False), description="the object as given")
    source: str = Field(max_length=500, description='"file:<path>", "api" or "builtin"')
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
