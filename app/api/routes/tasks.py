"""Task resource: submit the demo job, read status and result, revoke."""

from __future__ import annotations

from typing import Annotated, Any, cast
from uuid import UUID

from celery.result import AsyncResult
from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import CursorResult, update
from sqlmodel import col, select

from app.api.deps import CeleryDep, OwnerDep, RedisDep, SessionDep
from app.api.routes.parts import VALIDATE_TASK
from app.api.schemas import ErrorBody, TaskError, TaskResult, TaskRevoked, TaskStatus, TaskSubmitted
from app.api.submit import submit
from app.core.agents import OWNER_HEADER, held_for
from app.core.config import settings
from app.core.task_registry import Issued, issued, mark_finished
from app.models import FINISHED_STATUSES, Part, PartStatus, utcnow

router = APIRouter(prefix="/tasks", tags=["tasks"])

TaskId = Annotated[UUID, Path(description="A task id returned by a submit call")]
FINISHED = {"SUCCESS", "FAILURE", "REVOKED"}
RUNNING = {"STARTED", "PROGRESS"}
REVOKED_REASON = "revoked through the API (DELETE /api/v1/tasks/{id}) before its validation finished"
PIPELINE_PREFIX = "librarian.pipeline."
UNKNOWN_OR_EXPIRED: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Librarian never issued this id (or ISSUED_TASK_TTL passed)"},
    410: {"model": ErrorBody, "description": "The task finished and its result expired (RESULT_EXPIRES)"},
}


def _known_result(celery: CeleryDep, client: RedisDep, task_id: UUID) -> tuple[AsyncResult, Issued, str]:
    """The result, the issued record and the state; 404 for an id never issued, 410 for a task that
    finished and whose result expired. A task still queued or held is PENDING, however long it waits."""
    record = issued(client, str(task_id))  # read before the state: marked finished only once it is stored
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown task id {task_id}")
    result = AsyncResult(str(task_id), app=celery)
    state = result.state
    if state == "PENDING" and record.finished:
        raise HTTPException(
            status.HTTP_410_GONE,
            detail=f"task {task_id} finished and its result expired (results are kept {settings.RESULT_EXPIRES} s)",
        )
    if state in FINISHED and not record.finished:
        mark_finished(client, str(task_id))  # in case no worker did (an older one, a Redis error)
    return result, record, state


def _progress(name: str, state: str, info: object) -> tuple[int | None, str | None]:
    """Percent and message: the task's own message, else its current stage (validate_file reports
    `stage`; a pipeline task's stage is its name)."""
    if state == "SUCCESS":
        return 100, None
    if state == "PROGRESS" and isinstance(info, dict):
        return int(info.get("percent", 0)), info.get("message") or info.get("stage")
    if state in {"FAILURE", "RETRY"} and isinstance(info, BaseException):
        return None, f"{type(info).__name__}: {info}"
    message = name.removeprefix(PIPELINE_PREFIX) if state == "STARTED" and name.startswith(PIPELINE_PREFIX) else None
    return (0 if state in {"PENDING", "STARTED"} else None), message


@router.post(
    "/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskSubmitted,
    responses={403: {"model": ErrorBody, "description": "`owner` names another user than the token's"}},
)
def submit_test_task(
    celery: CeleryDep,
    client: RedisDep,
    token_owner: OwnerDep,
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
    """Queue the demo job, which reports PROGRESS while it walks its steps. With a token, `owner`
    defaults to the token's owner and may not name another."""
    if token_owner is not None:
        if owner not in (None, token_owner):
            raise HTTPException(403, detail=f"this token acts for {token_owner!r}, not for {owner!r}")
        owner = token_owner
    task_id = submit(
        celery,
        client,
        "librarian.demo.process",
        kwargs={"message": message, "steps": steps},
        headers={OWNER_HEADER: owner} if owner else None,
    )
    return TaskSubmitted(task_id=task_id, message=f"task queued: {message}")


@router.get("/{task_id}", response_model=TaskStatus, responses=UNKNOWN_OR_EXPIRED)
def get_task_status(task_id: TaskId, celery: CeleryDep, client: RedisDep) -> TaskStatus:
    result, record, state = _known_result(celery, client, task_id)
    percent, message = _progress(record.name, state, result.info)
    held = state == "PENDING" and (user := held_for(client, str(task_id))) is not None
    if held:
        message = f"held: user {user!r} is paused (POST /api/v1/agents/{user}/resume releases it)"
    return TaskStatus(
        task_id=str(task_id), task_name=record.name, status=state, progress=percent, message=message, held=held
    )


@router.get(
    "/{task_id}/result",
    response_model=TaskResult,
    responses={**UNKNOWN_OR_EXPIRED, 409: {"model": ErrorBody, "description": "The task has not finished"}},
)
def get_task_result(task_id: TaskId, celery: CeleryDep, client: RedisDep) -> TaskResult:
    result, _, state = _known_result(celery, client, task_id)
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
    responses={
        **UNKNOWN_OR_EXPIRED,
        403: {"model": ErrorBody, "description": "The task runs for another owner than the token's"},
        409: {"model": ErrorBody, "description": "The task already finished: nothing to stop"},
    },
)
def revoke_task(
    task_id: TaskId, celery: CeleryDep, client: RedisDep, session: SessionDep, owner: OwnerDep
) -> TaskRevoked:
    """Stop a task. A queued one never starts; a running one is terminated: its worker process gets
    SIGTERM (the hard time limit kills one that survives it). A part's validation task leaves the
    part `failed`, its error starting with `revoked`."""
    result, record, state = _known_result(celery, client, task_id)
    if owner is not None and record.owner not in (None, owner):
        raise HTTPException(403, detail=f"task {task_id} runs for another owner than {owner!r}")
    if state in FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"task already {state}: nothing to revoke")
    result.revoke(terminate=True, signal="SIGTERM")
    # Record REVOKED now, so the answer does not depend on a worker being up to hear the broadcast.
    celery.backend.mark_as_revoked(str(task_id), reason="revoked through the API")
    mark_finished(client, str(task_id))
    part_id = _fail_part(session, str(task_id)) if record.name == VALIDATE_TASK else None
    terminated = state in RUNNING
    message = (
        "task was running: revoked, and its worker process was sent SIGTERM"
        if terminated
        else f"task was {state}, not started: revoked, it will not run"
    )
    if part_id is not None:
        message += f"; part {part_id} is failed"
    return TaskRevoked(
        task_id=str(task_id), task_name=record.name, terminated=terminated, part_id=part_id, message=message
    )


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
