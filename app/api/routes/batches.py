"""Batches: many .3dm files through the staged import pipeline; progress, failures, retry."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from app import crud
from app.api.deps import CeleryDep, OwnerDep, RedisDep, RulesetQuery, SessionDep
from app.api.ratelimit import batch_limiter, rate_limit
from app.api.schemas import (
    BatchCreated,
    BatchRetried,
    BatchStatus,
    ErrorBody,
    FieldErrorBody,
    ItemFailure,
    RulesetChoice,
)
from app.api.submit import Message, submit_many
from app.api.uploads import discard, receive_files, submitter
from app.core import rulesets
from app.core.config import settings
from app.core.storage import sanitize_filename
from app.crud.batches import batch_progress, restore_items
from app.models import Batch, BatchItem, ItemStatus
from app.storage import get_store
from app.worker.tasks.pipeline import item_steps

router = APIRouter(prefix="/batches", tags=["batches"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such batch"}}


def publish_items(
    session: SessionDep, celery: CeleryDep, client: RedisDep, items: list[BatchItem], owner: str | None
) -> int:
    """Send each item's chain (from its failed stage, or the start) through submit_many: one round
    trip records the ids, one producer publishes. The items are `queued` first (a worker may start
    one before the last is sent); at the first broker error those not sent get their status back
    (POST /retry sends them later), and the answer is 503."""
    messages = [
        Message.chain(item_steps(str(item.id), owner=owner, start=item.failed_stage or "preprocess")) for item in items
    ]
    previous = crud.mark_items_queued(session, items=items)
    sent = 0
    try:
        for _ in submit_many(celery, client, messages):
            sent += 1
    finally:
        if sent < len(items):
            restore_items(session, items=items[sent:], previous=previous[sent:])
    return sent


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchCreated,
    dependencies=[Depends(rate_limit(batch_limiter))],
    responses={
        413: {"model": ErrorBody},
        415: {"model": ErrorBody, "description": "A file not named *.3dm"},
        422: {"model": FieldErrorBody},
        429: {"model": ErrorBody},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "owner": {"type": "string"},
                            "ruleset": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def create_batch(
    request: Request,
    session: SessionDep,
    celery: CeleryDep,
    client: RedisDep,
    ruleset: RulesetQuery = None,
) -> BatchCreated:
    """Upload many `.3dm` files (multipart field `files`, repeated); each runs the six stages. The
    `validate` stage uses the ruleset named by `?ruleset=` or the form field `ruleset` (the query
    wins), else DEFAULT_RULESET: its latest version now, for every item and every retry."""
    batch_id = uuid.uuid4()
    files, fields = await receive_files(
        request,
        store=get_store(),
        key_for=lambda item_id, name: f"batches/{batch_id}/{item_id}/{sanitize_filename(name)}",
        max_file_bytes=settings.max_file_size_bytes,
        max_files=settings.MAX_ITEMS_PER_BATCH,
        too_many_status=422,
        file_field="files",
    )
    # Everything after the body arrived blocks (store, database, broker): off the event loop.
    return await run_in_threadpool(
        _store_and_enqueue, request, batch_id, files, fields, ruleset, session, celery, client
    )


def _store_and_enqueue(
    request: Request,
    batch_id: uuid.UUID,
    files: list[Any],
    fields: dict[str, str],
    ruleset: str | None,
    session: SessionDep,
    celery: CeleryDep,
    client: RedisDep,
) -> BatchCreated:
    owner = submitter(request, fields)
    items = []
    try:
        chosen = rulesets.resolve(session, name=ruleset or fields.get("ruleset"))  # before anything is stored
        if not files:
            raise HTTPException(422, detail="no files: send them in the multipart field 'files'")
        refused = [f.filename for f in files if not f.filename.lower().endswith(".3dm")]
        if refused:  # as /parts does, and before any file is stored
            raise HTTPException(
                415,
                detail=f"not .3dm files: {', '.join(repr(n[:200]) for n in refused[:20])}"
                + (f" and {len(refused) - 20} more" if len(refused) > 20 else ""),
            )
        for received in files:
            received.upload.commit()
            items.append(
                BatchItem(
                    id=received.id,
                    batch_id=batch_id,
                    filename=received.filename[:255],
                    storage_key=received.key,
                    size_bytes=received.size,
                    sha256=received.sha256,
                    status=ItemStatus.PENDING,
                )
            )
        crud.create_batch(
            session,
            batch_id=batch_id,
            owner=owner,
            ruleset_name=chosen.name,
            ruleset_version=chosen.version,
            items=items,
        )
    except BaseException:
        discard(files)  # a refused batch, or one whose rows were not written, leaves no object behind
        raise
    queued = publish_items(session, celery, client, items, owner)
    return BatchCreated(
        batch_id=batch_id,
        total=len(items),
        queued=queued,
        ruleset=RulesetChoice(name=chosen.name, version=chosen.version),
    )


def _batch(session: SessionDep, batch_id: uuid.UUID) -> Batch:
    batch = crud.get_batch(session, batch_id=batch_id)
    if batch is None:
        raise HTTPException(404, detail=f"unknown batch {batch_id}")
    return batch


@router.get("/{batch_id}", response_model=BatchStatus, responses=NOT_FOUND)
def get_batch(batch_id: uuid.UUID, session: SessionDep) -> BatchStatus:
    """The batch's state and totals, items per status, and its dead-lettered items."""
    batch = _batch(session, batch_id)
    by_status = crud.count_items_by_status(session, batch_id=batch_id)  # one read: adds up to the total
    totals = batch_progress(by_status)
    failed = crud.list_failed_items(session, batch_id=batch_id, limit=100)
    return BatchStatus(
        batch_id=batch.id,
        owner=batch.owner,
        ruleset=RulesetChoice(name=batch.ruleset_name, version=batch.ruleset_version) if batch.ruleset_name else None,
        status=totals.state,
        total=batch.total,
        completed=totals.completed,
        failed=totals.failed,
        in_progress=totals.in_progress,
        done=totals.done,
        progress=f"{totals.done}/{batch.total}",
        percent=round(100.0 * totals.done / batch.total, 1) if batch.total else 100.0,
        by_status={status_.value: count for status_, count in by_status.items()},
        failures=[
            ItemFailure(item_id=i.id, filename=i.filename, status=i.status, stage=i.failed_stage, error=i.error)
            for i in failed
        ],
    )


@router.get("/{batch_id}/status", response_model=BatchStatus, responses=NOT_FOUND)
def get_batch_status(batch_id: uuid.UUID, session: SessionDep) -> BatchStatus:
    """The same answer as GET /batches/{batch_id}, under the seed's name (imports pipeline spec)."""
    return get_batch(batch_id, session)


@router.post(
    "/{batch_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchRetried,
    responses={
        **NOT_FOUND,
        403: {"model": ErrorBody, "description": "The batch belongs to another owner than the token's"},
    },
)
def retry_batch(
    batch_id: uuid.UUID, session: SessionDep, celery: CeleryDep, client: RedisDep, owner: OwnerDep
) -> BatchRetried:
    """Re-send failed items from the stage that failed (and items never sent). With a token: only a
    batch of its owner, or of none."""
    batch = _batch(session, batch_id)
    if owner is not None and batch.owner not in (None, owner):
        raise HTTPException(403, detail=f"batch {batch_id} belongs to another owner than {owner!r}")
    items = crud.list_items_to_send(session, batch_id=batch_id)
    return BatchRetried(batch_id=batch.id, retried=publish_items(session, celery, client, items, batch.owner))
