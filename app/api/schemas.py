"""Public shapes of the task API."""

from __future__ import annotations

from typing import Any, Literal

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
