"""Parts: upload a .3dm model, follow its validation, read its report."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from celery.result import AsyncResult
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from app import crud
from app.api.deps import CeleryDep, OwnerDep, RedisDep, RulesetQuery, SessionDep
from app.api.ratelimit import rate_limit, upload_limiter
from app.api.schemas import ErrorBody, FieldErrorBody, PartList, PartPublic, PartSubmitted, RulesetChoice
from app.api.submit import submit
from app.api.uploads import discard, receive_files, submitter
from app.core import rulesets
from app.core.agents import OWNER_HEADER
from app.core.cache import cache_delete, cache_get, cache_set, report_key
from app.core.config import settings
from app.core.errors import DependencyUnavailable
from app.core.storage import sanitize_filename
from app.models import FINISHED_STATUSES, Part, PartStatus, RulesetVersion
from app.storage import get_store

router = APIRouter(prefix="/parts", tags=["parts"])

VALIDATE_TASK = "librarian.validation.validate_file"
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such part"}}


def to_public(part: Part, celery: Any | None = None) -> PartPublic:
    progress, stage = None, None
    if part.status in FINISHED_STATUSES:
        progress = 100
    elif part.status == PartStatus.PROCESSING and celery is not None and part.task_id:
        info = AsyncResult(part.task_id, app=celery).info
        if isinstance(info, dict):
            progress, stage = info.get("percent"), info.get("stage")
    summary = (part.validation_report or {}).get("summary")
    return PartPublic(
        id=part.id,
        filename=part.filename,
        status=part.status,
        size_bytes=part.size_bytes,
        sha256=part.sha256,
        owner=part.owner,
        task_id=part.task_id,
        attempts=part.attempts,
        error=part.error,
        progress=progress,
        stage=stage,
        summary=summary,
        ruleset=RulesetChoice(name=part.ruleset_name, version=part.ruleset_version) if part.ruleset_name else None,
        created_at=part.created_at,
        updated_at=part.updated_at,
    )


def enqueue_validation(
    session: SessionDep, celery: CeleryDep, client: RedisDep, part: Part, ruleset: RulesetVersion
) -> PartSubmitted:
    """Queue validate_file for the part with that ruleset version; on a broker outage the part
    stays as it was (503)."""
    task_id = str(uuid.uuid4())
    headers = {OWNER_HEADER: part.owner} if part.owner else None
    submit(
        celery,
        client,
        VALIDATE_TASK,
        args=[str(part.id)],
        task_id=task_id,
        headers=headers,
        kwargs={"ruleset": ruleset.name, "ruleset_version": ruleset.version},
    )
    crud.update_part(
        session,
        part=part,
        status=PartStatus.QUEUED,
        task_id=task_id,
        error=None,
        ruleset_name=ruleset.name,
        ruleset_version=ruleset.version,
    )
    return PartSubmitted(
        part_id=part.id,
        task_id=task_id,
        status=PartStatus.QUEUED,
        ruleset=RulesetChoice(name=ruleset.name, version=ruleset.version),
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PartSubmitted,
    responses={
        403: {"model": ErrorBody, "description": "`owner` names another user than the token's"},
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": FieldErrorBody, "description": "No file, an empty file, or an unknown ruleset"},
        429: {"model": ErrorBody, "description": "Too many uploads from this client"},
    },
    dependencies=[Depends(rate_limit(upload_limiter))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "owner": {"type": "string"},
                            "ruleset": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def upload_part(
    request: Request, session: SessionDep, celery: CeleryDep, client: RedisDep, ruleset: RulesetQuery = None
) -> PartSubmitted:
    """Upload one `.3dm` file (multipart field `file`); validation runs in the background with the
    ruleset named by `?ruleset=` or the form field `ruleset` (the query wins), else DEFAULT_RULESET."""
    files, fields = await receive_files(
        request,
        store=get_store(),
        key_for=lambda part_id, name: f"parts/{part_id}/{sanitize_filename(name)}",
        max_file_bytes=settings.max_file_size_bytes,
        max_files=1,
    )
    # Everything after the body arrived blocks (store, database, broker): off the event loop.
    return await run_in_threadpool(_store_and_enqueue, request, files, fields, ruleset, session, celery, client)


def _store_and_enqueue(
    request: Request,
    files: list[Any],
    fields: dict[str, str],
    ruleset: str | None,
    session: SessionDep,
    celery: CeleryDep,
    client: RedisDep,
) -> PartSubmitted:
    try:
        chosen = rulesets.resolve(session, name=ruleset or fields.get("ruleset"))  # before anything is stored
        received = _single_3dm(files)
        owner = submitter(request, fields)
        received.upload.commit()
        part = crud.create_part(
            session,
            part_id=received.id,
            filename=received.filename,
            storage_key=received.key,
            size_bytes=received.size,
            sha256=received.sha256,
            owner=owner,
        )
    except BaseException:
        discard(files)  # a refused upload, or one whose row was not written, leaves no object behind
        raise
    try:
        return enqueue_validation(session, celery, client, part, chosen)
    except DependencyUnavailable:
        # The client is told to retry; nothing of this attempt stays behind.
        discard(files)
        crud.delete_part(session, part=part)
        raise


def _single_3dm(files: list[Any]) -> Any:
    if not files:
        raise HTTPException(422, detail="no file: send the model in the multipart field 'file'")
    received = files[0]
    if not received.filename.lower().endswith(".3dm"):
        raise HTTPException(415, detail=f"{received.filename!r} is not a .3dm file")
    if received.size == 0:
        raise HTTPException(422, detail="the file is empty")
    return received


@router.get("", response_model=PartList)
def list_parts(
    session: SessionDep,
    status_filter: Annotated[PartStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    ruleset: Annotated[str | None, Query(max_length=64)] = None,
    filename: Annotated[str | None, Query(max_length=255, description="A part of the file name, any case")] = None,
) -> PartList:
    """Newest first; each filter narrows the list (`filename` matches a part of the name)."""
    parts, total = crud.list_parts(
        session, status=status_filter, limit=limit, offset=offset, owner=owner, ruleset=ruleset, filename=filename
    )
    return PartList(items=[to_public(p) for p in parts], total=total, limit=limit, offset=offset)


def _get(session: SessionDep, part_id: uuid.UUID) -> Part:
    part = crud.get_part(session, part_id=part_id)
    if part is None:
        raise HTTPException(404, detail=f"unknown part {part_id}")
    return part


@router.get("/{part_id}", response_model=PartPublic, responses=NOT_FOUND)
def get_part(part_id: uuid.UUID, session: SessionDep, celery: CeleryDep) -> PartPublic:
    return to_public(_get(session, part_id), celery)


@router.get(
    "/{part_id}/report",
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "No report yet (or the part failed)"}},
)
def get_report(part_id: uuid.UUID, session: SessionDep, client: RedisDep) -> dict[str, Any]:
    cached = cache_get(client, report_key(part_id))
    if cached is not None:
        return cached
    part = _get(session, part_id)
    if part.status not in (PartStatus.VALIDATED, PartStatus.REJECTED) or part.validation_report is None:
        detail = f"part is {part.status.value}" + (f": {part.error}" if part.error else ", no report yet")
        raise HTTPException(409, detail=detail)
    cache_set(client, report_key(part_id), part.validation_report, settings.REPORT_CACHE_TTL)
    return part.validation_report


@router.post(
    "/{part_id}/revalidate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PartSubmitted,
    responses={
        **NOT_FOUND,
        403: {"model": ErrorBody, "description": "The part belongs to another owner than the token's"},
        409: {"model": ErrorBody, "description": "Validation already queued or running"},
        422: {"model": FieldErrorBody, "description": "Unknown ruleset"},
    },
)
def revalidate(
    part_id: uuid.UUID,
    session: SessionDep,
    celery: CeleryDep,
    client: RedisDep,
    owner: OwnerDep,
    ruleset: RulesetQuery = None,
) -> PartSubmitted:
    """Validate again with the latest version of `?ruleset=`, else of the part's previous ruleset
    (if it still exists), else of DEFAULT_RULESET. With a token: only a part of its owner, or of none."""
    part = _get(session, part_id)
    if owner is not None and part.owner not in (None, owner):
        raise HTTPException(403, detail=f"part {part_id} belongs to another owner than {owner!r}")
    if part.status in (PartStatus.QUEUED, PartStatus.PROCESSING):
        raise HTTPException(409, detail=f"part is already {part.status.value}")
    chosen = rulesets.resolve(session, name=ruleset or _previous_ruleset(session, part))
    cache_delete(client, report_key(part_id))
    return enqueue_validation(session, celery, client, part, chosen)


def _previous_ruleset(session: SessionDep, part: Part) -> str | None:
    """The ruleset last chosen for the part, or named by its report (parts from before the choice
    was recorded), when that name still exists."""
    named = ((part.validation_report or {}).get("ruleset") or {}).get("name")
    for name in (part.ruleset_name, named):
        if name and rulesets.latest(session, name=name) is not None:
            return name
    return None
