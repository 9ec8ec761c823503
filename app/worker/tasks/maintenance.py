"""Periodic maintenance (beat): nothing is left `processing` forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlmodel import select

from app import crud
from app.core.config import settings
from app.core.db import session_scope
from app.models import Part, PartStatus
from app.worker.celery_app import celery_app

log = structlog.get_logger("librarian.maintenance")


@celery_app.task(name="librarian.maintenance.sweep_stuck_parts")
def sweep_stuck_parts(grace_seconds: int = 120) -> dict:
    """Parts `processing` for longer than the hard time limit lost their worker: mark them failed.

    A hard time limit kills the pool child before the task can record anything, and a database
    outage can stop it from recording its own failure; this sweep closes both gaps.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.TASK_TIME_LIMIT + grace_seconds)
    swept = []
    with session_scope() as session:
        stuck = session.exec(
            select(Part).where(Part.status == PartStatus.PROCESSING, Part.updated_at < cutoff.replace(tzinfo=None))
        ).all()
        for part in stuck:
            crud.update_part(
                session, part=part, status=PartStatus.FAILED,
                error=f"no result within the hard time limit ({settings.TASK_TIME_LIMIT}s): worker lost or killed",
            )
            swept.append(str(part.id))
    if swept:
        log.warning("stuck parts marked failed", count=len(swept), part_ids=swept[:20])
    return {"swept": len(swept)}
