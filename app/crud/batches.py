"""Keyword-only database operations on batches and their items, shared by the API and the tasks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, func, select

from app.models import (
    FAILED_ITEM_STATUSES,
    WAITING_ITEM_STATUSES,
    Batch,
    BatchItem,
    BatchState,
    ItemStatus,
    utcnow,
)

# Lists of items come in one order on every backend (PostgreSQL has no implicit row order).
ITEM_ORDER = (col(BatchItem.filename), col(BatchItem.id))


def create_batch(
    session: Session,
    *,
    batch_id: uuid.UUID,
    owner: str | None,
    ruleset_name: str,
    ruleset_version: int,
    items: Sequence[BatchItem],
) -> Batch:
    """The batch row and its items (already built, files already stored), in one commit."""
    batch = Batch(
        id=batch_id, owner=owner, total=len(items), ruleset_name=ruleset_name, ruleset_version=ruleset_version
    )
    session.add(batch)
    session.add_all(items)
    session.commit()
    return batch


def get_batch(session: Session, *, batch_id: uuid.UUID) -> Batch | None:
    return session.get(Batch, batch_id)


def count_items_by_status(session: Session, *, batch_id: uuid.UUID) -> dict[ItemStatus, int]:
    """How many items are in each status, in one read: the counts add up to the batch's total."""
    rows = session.exec(
        select(BatchItem.status, func.count()).where(BatchItem.batch_id == batch_id).group_by(BatchItem.status)
    ).all()
    return {ItemStatus(status): count for status, count in rows}


@dataclass(frozen=True)
class BatchProgress:
    """A batch's totals: `completed` (published) + `failed` (dead-lettered) + `in_progress`
    (everything else: pending, queued, in a stage or between two) = `total`."""

    state: BatchState
    completed: int
    failed: int
    in_progress: int

    @property
    def done(self) -> int:
        return self.completed + self.failed


def batch_progress(by_status: Mapping[ItemStatus, int]) -> BatchProgress:
    """The totals and state from count_items_by_status (a batch without items is completed)."""
    completed = by_status.get(ItemStatus.PUBLISHED, 0)
    failed = sum(count for status, count in by_status.items() if status in FAILED_ITEM_STATUSES)
    in_progress = sum(by_status.values()) - completed - failed
    if in_progress == 0:
        state = BatchState.COMPLETED_WITH_FAILURES if failed else BatchState.COMPLETED
    elif all(status in WAITING_ITEM_STATUSES for status, count in by_status.items() if count):
        state = BatchState.QUEUED
    else:
        state = BatchState.RUNNING
    return BatchProgress(state=state, completed=completed, failed=failed, in_progress=in_progress)


def list_failed_items(session: Session, *, batch_id: uuid.UUID, limit: int = 100) -> list[BatchItem]:
    """Items in a dead-letter state (`<stage>_failed`), by file name."""
    query = select(BatchItem).where(BatchItem.batch_id == batch_id, col(BatchItem.status).in_(FAILED_ITEM_STATUSES))
    return list(session.exec(query.order_by(*ITEM_ORDER).limit(limit)).all())


def list_items_to_send(session: Session, *, batch_id: uuid.UUID) -> list[BatchItem]:
    """What POST /retry sends again: failed items, and items never sent (`pending`), by file name."""
    to_send = FAILED_ITEM_STATUSES | {ItemStatus.PENDING}
    query = select(BatchItem).where(BatchItem.batch_id == batch_id, col(BatchItem.status).in_(to_send))
    return list(session.exec(query.order_by(*ITEM_ORDER)).all())


def mark_items_queued(session: Session, *, items: Sequence[BatchItem]) -> list[tuple[ItemStatus, str | None]]:
    """The items are about to be published: `queued`, their last error cleared, in one commit; returns
    what each was, for restore_items. Before publishing, not after: a worker takes the first item
    while the last is still being sent, and its status must not be overwritten by ours."""
    previous = [(item.status, item.error) for item in items]
    now = utcnow()
    for item in items:
        item.status, item.error, item.updated_at = ItemStatus.QUEUED, None, now
        session.add(item)
    session.commit()
    return previous


def restore_items(
    session: Session, *, items: Sequence[BatchItem], previous: Sequence[tuple[ItemStatus, str | None]]
) -> None:
    """Put back the status and error of items marked queued but never published (the broker failed)."""
    now = utcnow()
    for item, (status, error) in zip(items, previous, strict=True):
        item.status, item.error, item.updated_at = status, error, now
        session.add(item)
    session.commit()


def get_batch_item(session: Session, *, item_id: uuid.UUID) -> BatchItem | None:
    return session.get(BatchItem, item_id)


def update_batch_item(session: Session, *, item: BatchItem, **changes: Any) -> BatchItem:
    """Set the fields and commit; the item's attributes reload on their next read."""
    for key, value in changes.items():
        setattr(item, key, value)
    item.updated_at = utcnow()
    session.add(item)
    session.commit()
    return item
