"""The import pipeline as a Celery chain: preprocess → parse → classify → extract → validate → publish.

Each stage is a task on the `pipeline` queue that loads the item, runs the plain stage function
(app.pipeline.stages), stores its output and moves the item's status on. Transient failures retry
with exponential backoff and jitter (Celery's own), 3 times; then, or at once for bad input, the
item lands in `<stage>_failed` — the dead-letter state — and the chain stops there.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from celery.canvas import Signature
from sqlalchemy.exc import OperationalError

from app import crud
from app.core import rulesets
from app.core.agents import OWNER_HEADER
from app.core.config import settings
from app.core.db import session_scope
from app.core.storage import resolve_in_storage
from app.models import PIPELINE_STAGES, STAGE_DONE, STAGE_FAILED, PartStatus
from app.observability.metrics import PIPELINE_DEAD_LETTER, PIPELINE_ITEMS
from app.pipeline import stages
from app.worker.base import LibrarianTask
from app.worker.celery_app import celery_app

log = structlog.get_logger("librarian.pipeline")

TRANSIENT_ERRORS = (OperationalError, OSError, ConnectionError, TimeoutError)
QUEUE = "pipeline"


class StageTask(LibrarianTask):
    stage: str = ""
    autoretry_for = TRANSIENT_ERRORS
    dont_autoretry_for = (stages.StageRejected,)
    # Bad input is an expected outcome: logged as one INFO line without a traceback, not as an
    # ERROR "raised unexpected" (app/observability/celery_logging.py).
    throws = (stages.StageRejected,)
    retry_backoff = settings.PIPELINE_RETRY_BACKOFF
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 3

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        item_id = args[0] if args else kwargs.get("item_id")
        PIPELINE_ITEMS.labels(self.stage, "failed").inc()
        PIPELINE_DEAD_LETTER.labels(self.stage).inc()
        try:
            with session_scope() as session:
                item = crud.get_batch_item(session, item_id=uuid.UUID(str(item_id)))
                if item is not None:
                    crud.update_batch_item(
                        session,
                        item=item,
                        status=STAGE_FAILED[self.stage],
                        failed_stage=self.stage,
                        error=f"{type(exc).__name__}: {exc}"[:2000],
                    )
        except Exception as db_exc:  # noqa: BLE001 (whatever the database says, the task's own failure stands)
            log.error("could not record the stage failure", item_id=item_id, error=type(db_exc).__name__)


def _run(task: StageTask, item_id: str) -> dict[str, Any]:
    with session_scope() as session:
        item = crud.get_batch_item(session, item_id=uuid.UUID(item_id))
        if item is None:
            return {"item_id": item_id, "status": "missing"}
        if task.stage == "preprocess":
            crud.update_batch_item(session, item=item, attempts=item.attempts + 1)
        path = resolve_in_storage(item.storage_key)
        outputs = dict(item.outputs or {})
        if task.stage == "validate":
            batch = crud.get_batch(session, batch_id=item.batch_id)
            ruleset = rulesets.for_task(
                session, name=batch.ruleset_name if batch else None, version=batch.ruleset_version if batch else None
            )
            file_name = item.filename
    if task.stage == "publish":
        output = _publish(item_id, outputs)
    elif task.stage == "validate":
        output = stages.validate(path, ruleset=ruleset, file_name=file_name)
    else:
        output = getattr(stages, task.stage)(path)
    with session_scope() as session:
        item = crud.get_batch_item(session, item_id=uuid.UUID(item_id))
        if item is None:
            return {"item_id": item_id, "status": "missing"}
        outputs = {**(item.outputs or {}), task.stage: output}  # a new dict: the JSON column sees the change
        crud.update_batch_item(
            session, item=item, outputs=outputs, status=STAGE_DONE[task.stage], failed_stage=None, error=None
        )
    PIPELINE_ITEMS.labels(task.stage, "ok").inc()
    return {"item_id": item_id, "status": STAGE_DONE[task.stage].value}


def _publish(item_id: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """Write the final part row, keyed by the item id: publishing twice updates, never duplicates."""
    report = outputs.get("validate") or {}
    passed = bool((report.get("summary") or {}).get("passed"))
    with session_scope() as session:
        item = crud.get_batch_item(session, item_id=uuid.UUID(item_id))
        if item is None:
            return {"item_id": item_id, "status": "missing"}
        batch = crud.get_batch(session, batch_id=item.batch_id)
        part = crud.get_part(session, part_id=item.id)
        values = {
            "filename": item.filename,
            "storage_key": item.storage_key,
            "size_bytes": item.size_bytes,
            "sha256": (outputs.get("preprocess") or {}).get("sha256", item.sha256),
            "status": PartStatus.VALIDATED if passed else PartStatus.REJECTED,
            "validation_report": report,
            "owner": batch.owner if batch else None,
            "error": None,
            "ruleset_name": batch.ruleset_name if batch else None,
            "ruleset_version": batch.ruleset_version if batch else None,
        }
        if part is None:
            part = crud.create_part(
                session,
                part_id=item.id,
                filename=values["filename"],
                storage_key=values["storage_key"],
                size_bytes=values["size_bytes"],
                sha256=values["sha256"],
                owner=values["owner"],
            )
        crud.update_part(
            session, part=part, **{k: v for k, v in values.items() if k not in ("filename", "storage_key")}
        )
        crud.update_batch_item(session, item=item, part_id=part.id)
    return {"part_id": item_id, "part_status": values["status"].value}


def _stage_task(stage: str) -> Any:
    def run(self: StageTask, item_id: str) -> dict[str, Any]:
        return _run(self, item_id)

    run.__name__ = stage
    return celery_app.task(bind=True, base=StageTask, name=f"librarian.pipeline.{stage}", stage=stage)(run)


STAGE_TASKS = {stage: _stage_task(stage) for stage in PIPELINE_STAGES}


def item_steps(item_id: str, *, owner: str | None, start: str = "preprocess") -> list[Signature]:
    """The stages for one item from `start` on, in order, each carrying the owner header (pause/resume);
    publish them as one chain (app.api.submit.Message.chain)."""
    headers = {OWNER_HEADER: owner} if owner else {}
    # From the task objects, not by name: publishing then carries their options (time limits, serializer).
    return [
        STAGE_TASKS[stage].si(item_id).set(headers=headers, queue=QUEUE)
        for stage in PIPELINE_STAGES[PIPELINE_STAGES.index(start) :]
    ]
