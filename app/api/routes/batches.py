"""Batches: many .3dm files through the staged import pipeline; progress, failures, retry."""

from __future__ import annotations

import os
import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlmodel import col, func, select

from app.api.deps import RedisDep, RulesetQuery, SessionDep
from app.api.ratelimit import rate_limit, upload_limiter
from app.api.schemas import ErrorBody, FieldErrorBody, RulesetChoice
from app.api.uploads import discard, receive_files
from app.core import rulesets
from app.core.config import settings
from app.core.errors import DependencyUnavailable
from app.core.storage import resolve_in_storage, sanitize_filename
from app.models import Batch, BatchItem, utcnow

router = APIRouter(prefix="/batches", tags=["batches"])

FINISHED = "published"
NOT_FOUND = {404: {"model": ErrorBody, "description": "No such batch"}}


class BatchCreated(BaseModel):
    batch_id: uuid.UUID
    total: int
    queued: int
    ruleset: RulesetChoice


class ItemFailure(BaseModel):
    item_id: uuid.UUID
    filename: str
    status: str
    stage: str | None
    error: str | None


class BatchStatus(BaseModel):
    batch_id: uuid.UUID
    owner: str | None
    ruleset: RulesetChoice | None = None
    total: int
    done: int
    progress: str
    percent: float
    by_status: dict[str, int]
    failures: list[ItemFailure]


class BatchRetried(BaseModel):
    batch_id: uuid.UUID
    retried: int


def _enqueue(session: SessionDep, items: list[BatchItem], owner: str | None, client: RedisDep) -> int:
    """Send each item's chain (from its failed stage, or the start); stop at the first broker error."""
    from app.worker.tasks.pipeline import item_chain

    try:
        client.ping()
    except Exception as exc:
        raise DependencyUnavailable("redis", type(exc).__name__) from exc
    sent = 0
    try:
        for item in items:
            item_chain(str(item.id), owner=owner, start=item.failed_stage or "preprocess").apply_async(retry=False)
            item.status, item.error, item.updated_at = "queued", None, utcnow()
            session.add(item)
            sent += 1
    except Exception as exc:  # the rest stay `pending`; POST /retry sends them later
        session.commit()
        raise DependencyUnavailable("redis", type(exc).__name__) from exc
    session.commit()
    return sent


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchCreated,
    dependencies=[Depends(rate_limit(upload_limiter))],
    responses={413: {"model": ErrorBody}, 415: {"model": ErrorBody, "description": "A file not named *.3dm"},
               422: {"model": FieldErrorBody}, 429: {"model": ErrorBody}},
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["files"],
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                       "owner": {"type": "string"}, "ruleset": {"type": "string"}},
    }}}}},
)
async def create_batch(
    request: Request, session: SessionDep, client: RedisDep,
    ruleset: RulesetQuery = None,
) -> BatchCreated:
    """Upload many `.3dm` files (multipart field `files`, repeated); each runs the six stages. The
    `validate` stage uses the ruleset named by `?ruleset=` or the form field `ruleset` (the query
    wins), else DEFAULT_RULESET: its latest version now, for every item and every retry."""
    batch_id = uuid.uuid4()
    files, fields = await receive_files(
        request, incoming_dir=settings.storage_dir / ".incoming", max_file_bytes=settings.max_file_size_bytes,
        max_files=settings.MAX_ITEMS_PER_BATCH, too_many_status=422, file_field="files",
    )
    # Everything after the body arrived blocks (disk, database, broker): off the event loop.
    return await run_in_threadpool(_store_and_enqueue, request, batch_id, files, fields, ruleset, session, client)


def _store_and_enqueue(request: Request, batch_id: uuid.UUID, files: list[Any], fields: dict[str, str],
                       ruleset: str | None, session: SessionDep, client: RedisDep) -> BatchCreated:
    owner = (fields.get("owner") or request.headers.get("x-librarian-user") or "").strip()[:100] or None
    items = []
    try:
        chosen = rulesets.resolve(session, name=ruleset or fields.get("ruleset"))  # before anything is stored
        if not files:
            raise HTTPException(422, detail="no files: send them in the multipart field 'files'")
        refused = [f.filename for f in files if not f.filename.lower().endswith(".3dm")]
        if refused:  # as /parts does, and before any file is stored
            raise HTTPException(415, detail=f"not .3dm files: {', '.join(repr(n[:200]) for n in refused[:20])}"
                                            + (f" and {len(refused) - 20} more" if len(refused) > 20 else ""))
        for received in files:
            item_id = uuid.uuid4()
            key = f"batches/{batch_id}/{item_id}/{sanitize_filename(received.filename)}"
            target = resolve_in_storage(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(received.temp_path, target)
            items.append(BatchItem(id=item_id, batch_id=batch_id, filename=received.filename[:255],
                                   storage_key=key, size_bytes=received.size, sha256=received.sha256,
                                   status="pending"))
    except BaseException:
        discard(files)
        raise
    session.add(Batch(id=batch_id, owner=owner, total=len(items), ruleset_name=chosen.name,
                      ruleset_version=chosen.version))
    session.add_all(items)
    session.commit()
    queued = _enqueue(session, items, owner, client)
    return BatchCreated(batch_id=batch_id, total=len(items), queued=queued,
                        ruleset=RulesetChoice(name=chosen.name, version=chosen.version))


def _batch(session: SessionDep, batch_id: uuid.UUID) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise HTTPException(404, detail=f"unknown batch {batch_id}")
    return batch


@router.get("/{batch_id}", response_model=BatchStatus, responses=NOT_FOUND)
def get_batch(batch_id: uuid.UUID, session: SessionDep) -> BatchStatus:
    batch = _batch(session, batch_id)
    # One consistent read: the counts always add up to the total.
    rows = session.exec(
        select(BatchItem.status, func.count()).where(BatchItem.batch_id == batch_id).group_by(BatchItem.status)
    ).all()
    by_status: dict[str, Any] = {status_: count for status_, count in rows}
    failed = session.exec(
        select(BatchItem).where(BatchItem.batch_id == batch_id, col(BatchItem.status).like("%\\_failed", escape="\\"))
        .limit(100)
    ).all()
    done = by_status.get(FINISHED, 0) + sum(c for s, c in by_status.items() if s.endswith("_failed"))
    return BatchStatus(
        batch_id=batch.id, owner=batch.owner, total=batch.total, done=done,
        ruleset=RulesetChoice(name=batch.ruleset_name, version=batch.ruleset_version) if batch.ruleset_name else None,
        progress=f"{done}/{batch.total}", percent=round(100.0 * done / batch.total, 1) if batch.total else 100.0,
        by_status=by_status,
        failures=[ItemFailure(item_id=i.id, filename=i.filename, status=i.status, stage=i.failed_stage, error=i.error)
                  for i in failed],
    )


@router.post("/{batch_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=BatchRetried, responses=NOT_FOUND)
def retry_batch(batch_id: uuid.UUID, session: SessionDep, client: RedisDep) -> BatchRetried:
    """Re-send failed items from the stage that failed (and items never sent)."""
    batch = _batch(session, batch_id)
    items = session.exec(
        select(BatchItem).where(
            BatchItem.batch_id == batch_id,
            col(BatchItem.status).like("%\\_failed", escape="\\") | (BatchItem.status == "pending"),
        )
    ).all()
    return BatchRetried(batch_id=batch.id, retried=_enqueue(session, list(items), batch.owner, client))


