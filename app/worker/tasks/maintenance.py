"""Periodic maintenance (beat): nothing is left `processing` forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlmodel import col, select

from app import crud
from app.core.config import settings
from app.core.db import session_scope
from app.models import Part, PartStatus
from app.worker.celery_app import celery_app

log = structlog.get_logger("librarian.maintenance")

REVOKED_REASON = "revoked: its validation task was revoked before it finished"


@celery_app.task(name="librarian.maintenance.sweep_stuck_parts")
def sweep_stuck_parts(grace_seconds: int = 120) -> dict:
    """Mark failed the parts whose validation can no longer finish.

    * `processing` for longer than the hard time limit: the worker was lost. A hard time limit kills
      the pool child before the task can record anything, and a database outage can stop it from
      recording its own failure; this closes both gaps.
    * `queued` or `processing` while their task is REVOKED: a revoke that raced the task's start
      (the task set `processing` after the API had marked the part failed) or came from outside the
      API (Flower, `celery control revoke`).

    The cutoff is timezone-aware: the columns are app.models.UTCDateTime, which refuses naive values
    and stores UTC (SQLite as text without an offset, PostgreSQL as `timestamptz`; both compare
    correctly against an aware cutoff).
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.TASK_TIME_LIMIT + grace_seconds)
    limit_error = f"no result within the hard time limit ({settings.TASK_TIME_LIMIT}s): worker lost or killed"
    lost, revoked = [], []
    with session_scope() as session:
        stuck = session.exec(select(Part).where(Part.status == PartStatus.PROCESSING, Part.updated_at < cutoff)).all()
        for part in stuck:
            crud.update_part(session, part=part, status=PartStatus.FAILED, error=limit_error)
            lost.append(str(part.id))
        waiting = session.exec(
            select(Part).where(
                col(Part.status).in_([PartStatus.QUEUED, PartStatus.PROCESSING]), col(Part.task_id).is_not(None)
            )
        ).all()
        for part in waiting:
            if celery_app.AsyncResult(part.task_id).state == "REVOKED":
                crud.update_part(session, part=part, status=PartStatus.FAILED, error=REVOKED_REASON)
                revoked.append(str(part.id))
    if lost:
        log.warning("stuck parts marked failed", count=len(lost), part_ids=lost[:20])
    if revoked:
        log.warning("parts of revoked tasks marked failed", count=len(revoked), part_ids=revoked[:20])
    return {"swept": len(lost), "revoked": len(revoked)}
