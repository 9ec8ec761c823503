"""Console pages for models: Upload, Parts (the list), Part (live status, then the report).

Every read and write goes through the JSON API's own functions (app/api/routes/parts.py and
batches.py), so the console and the API answer alike, 4xx details included.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from app.api.deps import CeleryDep, RedisDep, SessionDep
from app.api.ratelimit import batch_limiter, enforce, upload_limiter
from app.api.routes import batches as batches_api
from app.api.routes import parts as parts_api
from app.api.routes import rulesets as rulesets_api
from app.api.schemas import BatchCreated, PartSubmitted
from app.core.config import settings
from app.models import FINISHED_STATUSES, PartStatus
from app.ui.report import report_view
from app.ui.web import ConsoleOwner, CsrfChecked, render

router = APIRouter()

PAGE_SIZE = 25
REPORTED = {PartStatus.VALIDATED.value, PartStatus.REJECTED.value}


@router.get("/")
@router.get("/upload")
def upload_page(request: Request, owner: ConsoleOwner, session: SessionDep) -> Response:
    choices = rulesets_api.list_rulesets(session)
    context = {
        "rulesets": choices.items,
        "default_ruleset": choices.default,
        "max_bytes": settings.max_file_size_bytes,
        "max_mb": settings.MAX_FILE_SIZE_MB,
        "max_items": settings.MAX_ITEMS_PER_BATCH,
    }
    return render(request, "upload.html", context, owner)


@router.post("/upload/part", dependencies=[CsrfChecked], response_model=PartSubmitted)
async def upload_part(
    request: Request, owner: ConsoleOwner, session: SessionDep, celery: CeleryDep, client: RedisDep, ruleset: str = ""
) -> PartSubmitted:
    """One file: POST /api/v1/parts itself (multipart field `file`)."""
    enforce(upload_limiter, request, owner)
    return await parts_api.upload_part(request, session, celery, client, ruleset or None)


@router.post("/upload/batch", dependencies=[CsrfChecked], response_model=BatchCreated)
async def upload_batch(
    request: Request, owner: ConsoleOwner, session: SessionDep, celery: CeleryDep, client: RedisDep, ruleset: str = ""
) -> BatchCreated:
    """Several files: POST /api/v1/batches itself (multipart field `files`)."""
    enforce(batch_limiter, request, owner)
    return await batches_api.create_batch(request, session, celery, client, ruleset or None)


@router.get("/parts")
def parts_page(
    request: Request,
    owner: ConsoleOwner,
    session: SessionDep,
    status: Annotated[str, Query(max_length=20)] = "",
    user: Annotated[str, Query(max_length=100)] = "",
    ruleset: Annotated[str, Query(max_length=64)] = "",
    filename: Annotated[str, Query(max_length=255)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    try:
        chosen = PartStatus(status) if status else None
    except ValueError:
        raise HTTPException(422, detail=f"unknown status {status[:20]!r}") from None
    listed = parts_api.list_parts(
        session,
        status_filter=chosen,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        owner=user.strip() or None,
        ruleset=ruleset.strip() or None,
        filename=filename.strip() or None,
    )
    filters = {"status": status, "user": user, "ruleset": ruleset, "filename": filename}
    pages = max(1, -(-listed.total // PAGE_SIZE))
    context = {
        "parts": listed.items,
        "total": listed.total,
        "page": page,
        "pages": pages,
        "filters": filters,
        "query": {k: v for k, v in filters.items() if v},
        "statuses": [s.value for s in PartStatus],
        "rulesets": [r.name for r in rulesets_api.list_rulesets(session).items],
    }
    return render(request, "parts.html", context, owner)


def _part_context(part_id: uuid.UUID, session: SessionDep, celery: CeleryDep, client: RedisDep) -> dict[str, Any]:
    part = parts_api.get_part(part_id, session, celery)
    report = None
    if part.status in REPORTED:
        try:
            report = report_view(parts_api.get_report(part_id, session, client))
        except HTTPException:
            report = None  # revalidated meanwhile: the next refresh shows it
    final = part.status in {s.value for s in FINISHED_STATUSES} and (report is not None or part.status not in REPORTED)
    return {"part": part, "report": report, "final": final}


@router.get("/parts/{part_id}")
def part_page(
    request: Request, part_id: uuid.UUID, owner: ConsoleOwner, session: SessionDep, celery: CeleryDep, client: RedisDep
) -> Response:
    context = _part_context(part_id, session, celery, client)
    return render(request, "part.html", context | {"events_user": _events_user(owner, context["part"].owner)}, owner)


@router.get("/parts/{part_id}/live")
def part_live(
    request: Request, part_id: uuid.UUID, owner: ConsoleOwner, session: SessionDep, celery: CeleryDep, client: RedisDep
) -> Response:
    """The part's status (and, once final, its report): the fragment the page refreshes."""
    return render(request, "_part_live.html", _part_context(part_id, session, celery, client), owner)


@router.get("/parts/{part_id}/report.json")
def part_report(part_id: uuid.UUID, _: ConsoleOwner, session: SessionDep, client: RedisDep) -> Response:
    report = parts_api.get_report(part_id, session, client)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str((report.get("metadata") or {}).get("file_name") or part_id))
    return JSONResponse(
        report,
        headers={"Content-Disposition": f'attachment; filename="{name[:150]}.report.json"'},
    )


@router.post("/parts/{part_id}/revalidate", dependencies=[CsrfChecked])
def revalidate(
    part_id: uuid.UUID, owner: ConsoleOwner, session: SessionDep, celery: CeleryDep, client: RedisDep
) -> Response:
    parts_api.revalidate(part_id, session, celery, client, owner, None)
    return RedirectResponse(f"/ui/parts/{part_id}", status_code=303)


def _events_user(owner: str | None, subject_owner: str | None) -> str | None:
    """Whose status events a page may listen to: the subject's owner, if the viewer may see them."""
    if subject_owner and (owner is None or owner == subject_owner):
        return subject_owner
    return None
