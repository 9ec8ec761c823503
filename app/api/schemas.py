"""Public shapes of the task API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

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


class PartSubmitted(BaseModel):
    part_id: UUID
    task_id: str
    status: str


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
    created_at: datetime
    updated_at: datetime


class PartList(BaseModel):
    items: list[PartPublic]
    total: int
    limit: int
    offset: int
