"""The import pipeline as a Celery chain: preprocess → parse → classify → extract → validate → publish.

Each stage is a task on the `pipeline` queue that marks the item as in that stage (`parsing`),
runs the plain stage function (app.pipeline.stages), stores its output and moves the item's status
on (`parsed`). Transient failures retry with exponential backoff and jitter (retry_countdown:
PIPELINE_RETRY_BACKOFF doubling up to PIPELINE_RETRY_BACKOFF_MAX), PIPELINE_MAX_RETRIES times; then,
or at once for bad input, the item lands in `<stage>_failed` — the dead-letter state, one
"item dead-lettered" log line — and the chain stops there.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from celery.canvas import Signature
from sqlalchemy.exc import OperationalError

from app import crud
from app.core import rulesets
from app.core.agents import OWNER_HEADER
from app.core.config import settings
from app.core.db import session_scope
from app.models import PIPELINE_STAGES, STAGE_DONE, STAGE_FAILED, STAGE_RUNNING, PartStatus
from app.observability.metrics import PIPELINE_DEAD_LETTER, PIPELINE_ITEMS
from app.pipeline import stages
from app.storage import get_store
from app.worker.base import LibrarianTask
from app.worker.celery_app import celery_app

log = structlog.get_logger("librarian.pipeline")

TRANSIENT_ERRORS = (OperationalError, OSError, ConnectionError, TimeoutError)
QUEUE = "pipeline"


def retry_countdown(
    retries: int,
    *,
    factor: float,
    maximum: float,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number `retries + 1`: factor * 2**retries capped at `maximum` (and at
    MAX_TASK_COUNTDOWN, which the start-up check sizes the visibility timeout for), then shortened
    by up to half at random so that items failing together do not retry together. Unlike Celery's
    full jitter (0 to the whole delay), every wait is at least half its nominal length: three
    retries outlast an outage of half their sum whatever the draw."""
    nominal = min(factor * 2**retries, maximum, settings.MAX_TASK_COUNTDOWN)
    return round(max(0.0, nominal * (1 - jitter() / 2)), 1)


class StageTask(LibrarianTask):
    stage: str = ""
    # Bad input is an expected outcome: logged as one INFO line without a traceback, not as an
    # ERROR "raised unexpected" (app/observability/celery_logging.py).
    throws = (stages.StageRejected,)
    max_retries = settings.PIPELINE_MAX_RETRIES

    def retry_transient(self, exc: BaseException) -> Exception:
        """Schedule the next attempt (raises celery's Retry), or re-raise `exc` once retries are spent."""
        countdown = retry_countdown(
            self.request.retries, factor=settings.PIPELINE_RETRY_BACKOFF, maximum=settings.PIPELINE_RETRY_BACKOFF_MAX
        )
        return self.retry(exc=exc, countdown=countdown)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        item_id = args[0] if args else kwargs.get("item_id")
        PIPELINE_ITEMS.labels(self.stage, "failed").inc()
        PIPELINE_DEAD_LETTER.labels(self.stage).inc()
        batch_id = None
        try:
            with session_scope() as session:
                item = crud.get_batch_item(session, item_id=uuid.UUID(str(item_id)))
                if item is not None:
                    batch_id = str(item.batch_id)
                    crud.update_batch_item(
                        session,
                        item=item,
                        status=STAGE_FAILED[self.stage],
                        failed_stage=self.stage,
                        error=f"{type(exc).__name__}: {exc}"[:2000],
                    )
        except Exception as db_exc:  # noqa: BLE001 (whatever the database says, the task's own failure stands)
            log.error("could not record the stage failure", item_id=item_id, error=type(db_exc).__name__)
        rejected = isinstance(exc, stages.StageRejected)
        reason = "rejected" if rejected else "retries exhausted" if isinstance(exc, TRANSIENT_ERRORS) else "failed"
        # One line per dead-lettered item (docs/runbook.md, LibrarianDeadLetterItems); bad input is
        # expected, the rest needs a look.
        (log.warning if rejected else log.error)(
            "item dead-lettered",
            item_id=str(item_id),
            batch_id=batch_id,
            stage=self.stage,
            reason=reason,
            error=type(exc).__name__,
            error_message=str(exc)[:2000],
        )


def _run(task: StageTask, item_id: str) -> dict[str, Any]:
    with session_scope() as session:
        item = crud.get_batch_item(session, item_id=uuid.UUID(item_id))
        if item is None:
            return {"item_id": item_id, "status": "missing"}
        # The running status, set at every attempt: a stage waiting for its retry stays in it.
        attempts = item.attempts + 1 if task.stage == "preprocess" else item.attempts
        crud.update_batch_item(session, item=item, status=STAGE_RUNNING[task.stage], attempts=attempts)
        storage_key = item.storage_key
        outputs = dict(item.outputs or {})
        if task.stage == "validate":
            batch = crud.get_batch(session, batch_id=item.batch_id)
            ruleset = rulesets.for_task(
                session, name=batch.ruleset_name if batch else None, version=batch.ruleset_version if batch else None
            )
            file_name = item.filename
    if task.stage == "publish":
        output = _publish(item_id, outputs)
    else:
        # A local copy for the stage's length (S3). A missing object is FileNotFoundError and a store
        # outage StorageUnavailable (a ConnectionError): both OSErrors, retried as transient.
        with get_store().materialise(storage_key) as path:
            if task.stage == "validate":
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
        try:
            return _run(self, item_id)
        except TRANSIENT_ERRORS as exc:
            raise self.retry_transient(exc) from exc

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
