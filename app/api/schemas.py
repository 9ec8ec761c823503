"""Public shapes of the task API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from app.models import BatchState, ItemStatus

TaskState = Literal["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED"]


class TaskSubmitted(BaseModel):
    task_id: str
    status: TaskState = "PENDING"
    message: str


class TaskStatus(BaseModel):
    task_id: str
    task_name: str | None = None
    status: TaskState
    progress: int | None = None
    message: str | None = None
    held: bool = Field(default=False, description="PENDING because its owner is paused (POST /agents/{user}/pause)")


class TaskRevoked(BaseModel):
    """The answer to DELETE /tasks/{id}: the task will not run, or was stopped."""

    task_id: str
    task_name: str | None = None
    status: Literal["REVOKED"] = "REVOKED"
    terminated: bool = Field(description="True when the task was running and its worker process was sent SIGTERM")
    part_id: UUID | None = Field(default=None, description="The part this validation task was for, now `failed`")
    message: str


class TaskError(BaseModel):
    type: str
    message: str


class TaskResult(BaseModel):
    task_id: str
    status: TaskState
    result: Any = None
    error: TaskError | None = None


class ErrorBody(BaseModel):
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class FieldErrorBody(BaseModel):
    """A 422: a sentence and the field at fault, or (for a malformed parameter) FastAPI's list."""

    detail: str | list[ValidationIssue]
    field: str | None = Field(default=None, description="The input at fault: a rule field, `name` or `ruleset`")


class RulesetChoice(BaseModel):
    """The ruleset version a submission was given (fixed when it was submitted)."""

    name: str
    version: int


class PartSubmitted(BaseModel):
    part_id: UUID
    task_id: str
    status: str
    ruleset: RulesetChoice


class PartPublic(BaseModel):
    id: UUID
    filename: str
    status: str
    size_bytes: int
    sha256: str
    owner: str | None = None
    task_id: str | None = None
    attempts: int
    error: str | None = None
    progress: int | None = None
    stage: str | None = None
    summary: dict[str, Any] | None = None
    ruleset: RulesetChoice | None = Field(None, description="Chosen at the last submit; null for older parts")
    created_at: datetime
    updated_at: datetime


class PartList(BaseModel):
    items: list[PartPublic]
    total: int
    limit: int
    offset: int


class BatchCreated(BaseModel):
    batch_id: UUID
    total: int
    queued: int
    ruleset: RulesetChoice


class ItemFailure(BaseModel):
    item_id: UUID
    filename: str
    status: ItemStatus
    stage: str | None
    error: str | None


class BatchStatus(BaseModel):
    batch_id: UUID
    owner: str | None
    ruleset: RulesetChoice | None = None
    status: BatchState = Field(
        description="queued: no item started; running: some started, not all finished; completed: every item "
        "published; completed_with_failures: every item finished, some dead-lettered (`<stage>_failed`)"
    )
    total: int
    completed: int = Field(description="Items published")
    failed: int = Field(description="Items dead-lettered (`<stage>_failed`): POST /retry sends them again")
    in_progress: int = Field(description="Items neither published nor dead-lettered: total - completed - failed")
    done: int = Field(description="completed + failed: items in a final state")
    progress: str = Field(description='"done/total"')
    percent: float = Field(description="100 * done / total, one decimal")
    by_status: dict[str, int] = Field(description="Items per status (an ItemStatus value): they add up to `total`")
    failures: list[ItemFailure] = Field(description="Up to 100 dead-lettered items")


class BatchRetried(BaseModel):
    batch_id: UUID
    retried: int


class RulesetSummary(BaseModel):
    name: str
    version: int
    sha256: str
    description: str | None = None
    source: str = Field(description='"file:<path>" (read-only over HTTP), "api" or "builtin"')
    created_at: datetime


class RulesetPublic(RulesetSummary):
    rules: dict[str, Any] = Field(description="Every rule in effect: the content over the defaults")
    content: dict[str, Any] = Field(description="The object as given (file or PUT body)")


class RulesetList(BaseModel):
    items: list[RulesetSummary] = Field(description="The latest version of each name")
    default: str = Field(description="DEFAULT_RULESET: used when a submission names none")
