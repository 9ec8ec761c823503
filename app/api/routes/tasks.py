"""Task resource: submit the demo job, read status and result, revoke."""

from __future__ import annotations

from typing import Annotated, Any, cast
from uuid import UUID

from celery.result import AsyncResult
from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import CursorResult, update
from sqlmodel import col, select

from app.api.deps import CeleryDep, RedisDep, SessionDep
from app.api.routes.parts import VALIDATE_TASK
from app.api.schemas import ErrorBody, TaskError, TaskResult, TaskRevoked, TaskStatus, TaskSubmitted
from app.api.submit import submit
from app.core.agents import OWNER_HEADER, held_for
from app.core.task_registry import issued_task_name
from app.models import FINISHED_STATUSES, Part, PartStatus, utcnow

router = APIRouter(prefix="/tasks", tags=["tasks"])

TaskId = Annotated[UUID, Path(description="A task id returned by a submit call")]
FINISHED = {"SUCCESS", "FAILURE", "REVOKED"}
RUNNING = {"STARTED", "PROGRESS"}
REVOKED_REASON = "revoked through the API (DELETE /api/v1/tasks/{id}) before its validation finished"
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Librarian never issued this id (or it expired)"}
}


def _known_result(celery: CeleryDep, client: RedisDep, task_id: UUID) -> tuple[AsyncResult, str]:
    name = issued_task_name(client, str(task_id))
    if name is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown task id {task_id}")
    return AsyncResult(str(task_id), app=celery), name


def _progress(state: str, info: object) -> tuple[int | None, str | None]:
    if state == "SUCCESS":
        return 100, None
    if state == "PROGRESS" and isinstance(info, dict):
        return int(info.get("percent", 0)), info.get("message")
    if state in {"FAILURE", "RETRY"} and isinstance(info, BaseException):
        return None, f"{type(info).__name__}: {info}"
    return (0 if state in {"PENDING", "STARTED"} else None), None


@router.post("/test", status_code=status.HTTP_202_ACCEPTED, response_model=TaskSubmitted)
def submit_test_task(
    celery: CeleryDep,
    client: RedisDep,
    message: Annotated[str, Query(min_length=1, max_length=1000)] = "Hello",
    steps: Annotated[int, Query(ge=1, le=100)] = 5,
    owner: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            pattern=r"^[A-Za-z0-9_.@-]+$",
            description="user the task runs for (pause/resume, events)",
        ),
    ] = None,
) -> TaskSubmitted:
    """Queue the demo job, which reports PROGRESS while it walks its steps."""
    task_id = submit(
        celery,
        client,
        "librarian.demo.process",
        kwargs={"message": message, "steps": steps},
        headers={OWNER_HEADER: owner} if owner else None,
    )
    return TaskSubmitted(task_id=task_id, message=f"task queued: {message}")


@router.get("/{task_id}", response_model=TaskStatus, responses=NOT_FOUND)
def get_task_status(task_id: TaskId, celery: CeleryDep, client: RedisDep) -> TaskStatus:
    result, name = _known_result(celery, client, task_id)
    state = result.state
    percent, message = _progress(state, result.info)
    held = state == "PENDING" and (user := held_for(client, str(task_id))) is not None
    if held:
        message = f"held: user {user!r} is paused (POST /api/v1/agents/{user}/resume releases it)"
    return TaskStatus(task_id=str(task_id), task_name=name, status=state, progress=percent, message=message, held=held)


@router.get(
    "/{task_id}/result",
    response_model=TaskResult,
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "The task has not finished"}},
)
def get_task_result(task_id: TaskId, celery: CeleryDep, client: RedisDep) -> TaskResult:
    result, _ = _known_result(celery, client, task_id)
    state = result.state
    if state not in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"task is {state}, not finished")
    if state == "SUCCESS":
        return TaskResult(task_id=str(task_id), status=state, result=result.result)
    error = result.result
    return TaskResult(
        task_id=str(task_id),
        status=state,
        error=TaskError(type=type(error).__name__, message=str(error)),
    )


@router.delete(
    "/{task_id}",
    response_model=TaskRevoked,
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "The task already finished: nothing to stop"}},
)
def revoke_task(task_id: TaskId, celery: CeleryDep, client: RedisDep, session: SessionDep) -> TaskRevoked:
    """Stop a task. A queued one never starts; a running one is terminated: its worker process gets
    SIGTERM (the hard time limit kills one that survives it). A part's validation task leaves the
    part `failed`, its error starting with `revoked`."""
    result, name = _known_result(celery, client, task_id)
    state = result.state
    if state in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"task already {state}: nothing to revoke")
    result.revoke(terminate=True, signal="SIGTERM")
    # Record REVOKED now, so the answer does not depend on a worker being up to hear the broadcast.
    celery.backend.mark_as_revoked(str(task_id), reason="revoked through the API")
    part_id = _fail_part(session, str(task_id)) if name == VALIDATE_TASK else None
    terminated = state in RUNNING
    message = (
        "task was running: revoked, and its worker process was sent SIGTERM"
        if terminated
        else f"task was {state}, not started: revoked, it will not run"
    )
    if part_id is not None:
        message += f"; part {part_id} is failed"
    return TaskRevoked(task_id=str(task_id), task_name=name, terminated=terminated, part_id=part_id, message=message)


def _fail_part(session: SessionDep, task_id: str) -> UUID | None:
    """Mark failed the unfinished part this validation task was for; its id, or None."""
    part_id = session.exec(select(Part.id).where(Part.task_id == task_id)).first()
    if part_id is None:
        return None
    result = session.execute(
        update(Part)
        .where(col(Part.id) == part_id, col(Part.status).not_in(FINISHED_STATUSES))
        .values(status=PartStatus.FAILED, error=REVOKED_REASON, updated_at=utcnow())
    )
    changed = cast("CursorResult[Any]", result).rowcount  # an UPDATE's result is a CursorResult
    session.commit()
    return part_id if changed else None
