"""validate_file: the Librarian's main job. The logic lives in app/validation; this only wires it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from app import crud
from app.core import rulesets
from app.core.cache import cache_delete, report_key
from app.core.config import settings
from app.core.db import session_scope
from app.core.redis import get_redis
from app.models import Part, PartStatus
from app.observability import model_metrics
from app.observability.sentry import tag_part
from app.storage import get_store
from app.validation import ModelFileMissingError, UnreadableModelError
from app.validation.sandbox import Limits, SandboxStartError
from app.worker.base import LibrarianTask, ProgressThrottle
from app.worker.celery_app import celery_app

log = structlog.get_logger("librarian.validation")

# Worth retrying: the database or the storage hiccuped. Not worth it: a file that is not a model.
TRANSIENT_ERRORS = (OperationalError, ConnectionError, TimeoutError, SandboxStartError)
# The engine's own verdicts on a model it could not finish (app/validation/guarded.py): logged
SANDBOX_VERDICTS = ("RESOURCE_LIMIT", "ENGINE_CRASH", "MODEL_TOO_LARGE")


def forget_cached_report(part_id: str) -> None:
    cache_delete(get_redis(), report_key(part_id))


class ValidationTask(LibrarianTask):
    """Records the final failure on the part once Celery gives up retrying."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        part_id = args[0] if args else kwargs.get("part_id")
        message = f"{type(exc).__name__}: {exc}"[:2000]
        try:
            key = uuid.UUID(str(part_id))
        except ValueError:
            return  # no part to record it on (a message that never named one)
        ruleset, size = None, None
        try:
            with session_scope() as session:
                part = session.get(Part, key)
                if part is None or part.status in (PartStatus.VALIDATED, PartStatus.REJECTED):
                    return  # gone, or finished (and counted) before this failure
                ruleset, size = part.ruleset_name, part.size_bytes
                crud.update_part(session, part=part, status=PartStatus.FAILED, error=message)
        except Exception as db_exc:  # noqa: BLE001 (the maintenance sweep marks it failed later)
            log.error("could not record the failure", part_id=part_id, error=type(db_exc).__name__)
        ruleset = ruleset or settings.DEFAULT_RULESET
        model_metrics.part_failed(part_id=str(part_id), ruleset=ruleset, error=type(exc).__name__, size_bytes=size)


@celery_app.task(
    bind=True,
    base=ValidationTask,
    name="librarian.validation.validate_file",
    # Seed 000 (T-022): 3 retries a minute apart, long enough to outlast a database failover or a
    # storage blip (docs/runbook.md, "How long work survives an outage"); then `failed`
    # (on_failure). A pool child lost mid-task retries after the same delay (task_retry_on_worker_lost).
    autoretry_for=TRANSIENT_ERRORS,
    default_retry_delay=min(settings.TASK_RETRY_DELAY, settings.MAX_TASK_COUNTDOWN),
    max_retries=3,
)
def validate_file(
    self: ValidationTask, part_id: str, ruleset: str | None = None, ruleset_version: int | None = None
) -> dict[str, Any]:
    """Validate a part with exactly the ruleset version fixed at submit time (messages without
    one, sent before rulesets existed, get the latest DEFAULT_RULESET)."""
    from app.validation.guarded import unreadable_report, validate_guarded  # noqa: PLC0415 (rhino3dm: ~100 ms)

    tag_part(part_id)
    with session_scope() as session:
        part = session.get(Part, uuid.UUID(part_id))
        if part is None:
            log.warning("part no longer exists", part_id=part_id)
            return {"part_id": part_id, "status": "missing"}
        chosen = rulesets.for_task(session, name=ruleset, version=ruleset_version)  # UnknownRuleset: failed
        part = crud.update_part(
            session,
            part=part,
            status=PartStatus.PROCESSING,
            task_id=self.request.id,
            attempts=part.attempts + 1,
            error=None,
        )
        storage_key, file_name, size_bytes = part.storage_key, part.filename, part.size_bytes

    progress = ProgressThrottle(lambda percent, stage: self.report_progress(percent, stage=stage, part_id=part_id))

    started = time.perf_counter()
    try:
        # A local copy for the block's length (S3); StorageUnavailable is a ConnectionError: retried.
        with get_store().materialise(storage_key) as path:
            report = validate_guarded(
                path,
                limits=Limits(*settings.validation_limits),
                ruleset=chosen,
                progress=progress,
                file_name=file_name,
                max_report_bytes=settings.MAX_REPORT_BYTES,
            )
        status, error = (PartStatus.VALIDATED if report["summary"]["passed"] else PartStatus.REJECTED), None
        verdict = next((f for f in report["findings"] if f["code"] in SANDBOX_VERDICTS), None)
        if verdict is not None:
            error = verdict["message"][:2000]
            level = log.error if verdict["code"] == "ENGINE_CRASH" else log.warning
            level(
                "model not finished",
                part_id=part_id,
                code=verdict["code"],
                reason=verdict["message"],
                **{k: v for k, v in verdict["details"].items() if k != "file_name"},
            )
    except FileNotFoundError as exc:  # no such object in the store: as a missing local file, rejected
        missing = ModelFileMissingError(str(exc))
        report, status, error = unreadable_report(missing, chosen, file_name), PartStatus.REJECTED, missing.reason
    except UnreadableModelError as exc:
        report, status, error = unreadable_report(exc, chosen, file_name), PartStatus.REJECTED, exc.reason
    except SoftTimeLimitExceeded:
        raise SoftTimeLimitExceeded(f"validation of part {part_id} exceeded the soft time limit") from None
    duration_s = time.perf_counter() - started

    with session_scope() as session:
        part = session.get(Part, uuid.UUID(part_id))
        if part is None:
            return {"part_id": part_id, "status": "missing"}
        crud.update_part(session, part=part, status=status, validation_report=report, error=error)
    model_metrics.part_finished(
        part_id=part_id,
        outcome=status.value,
        ruleset=chosen.name,
        ruleset_version=chosen.version,
        report=report,
        duration_s=duration_s,
        size_bytes=size_bytes,
    )
    forget_cached_report(part_id)
    return {"part_id": part_id, "status": status.value, "summary": report["summary"]}
