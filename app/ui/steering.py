"""Console pages that steer work: Batch (live X/N, failures, retry) and Agents (the pause brake),
plus the status-event stream the live pages listen to.

Reads and writes are the JSON API's own functions (app/api/routes/batches.py and agents.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import CeleryDep, RedisDep, SessionDep
from app.api.routes import agents as agents_api
from app.api.routes import batches as batches_api
from app.api.routes import parts as parts_api
from app.core import agents
from app.models import PIPELINE_STAGES, STAGE_DONE, STAGE_FAILED, STAGE_RUNNING, BatchState
from app.ui.web import ConsoleOwner, CsrfChecked, render

router = APIRouter()

FINISHED_BATCH = {BatchState.COMPLETED.value, BatchState.COMPLETED_WITH_FAILURES.value}
KNOWN_USERS = 20


def stage_rows(by_status: dict[str, int]) -> list[dict[str, Any]]:
    """Per stage: items running it (or waiting for a retry of it), done with it, dead-lettered in it.
    An item is done with a stage once it finished it, or failed in a later one."""
    order = [status.value for stage in PIPELINE_STAGES for status in (STAGE_RUNNING[stage], STAGE_DONE[stage])]
    rows = []
    for n, stage in enumerate(PIPELINE_STAGES):
        past = order[order.index(STAGE_DONE[stage].value) :]
        failed_later = [STAGE_FAILED[later].value for later in PIPELINE_STAGES[n + 1 :]]
        rows.append(
            {
                "stage": stage,
                "running": by_status.get(STAGE_RUNNING[stage].value, 0),
                "done": sum(by_status.get(status, 0) for status in past + failed_later),
                "failed": by_status.get(STAGE_FAILED[stage].value, 0),
            }
        )
    return rows


def _batch_context(batch_id: uuid.UUID, session: SessionDep) -> dict[str, Any]:
    batch = batches_api.get_batch(batch_id, session)
    return {"batch": batch, "stages": stage_rows(batch.by_status), "final": batch.status in FINISHED_BATCH}


@router.get("/batches/{batch_id}")
def batch_page(request: Request, batch_id: uuid.UUID, owner: ConsoleOwner, session: SessionDep) -> Response:
    context = _batch_context(batch_id, session)
    subject = context["batch"].owner
    events_user = subject if subject and owner in (None, subject) else None
    return render(request, "batch.html", context | {"events_user": events_user}, owner)


@router.get("/batches/{batch_id}/live")
def batch_live(request: Request, batch_id: uuid.UUID, owner: ConsoleOwner, session: SessionDep) -> Response:
    return render(request, "_batch_live.html", _batch_context(batch_id, session), owner)


@router.post("/batches/{batch_id}/retry", dependencies=[CsrfChecked])
def retry_batch(
    batch_id: uuid.UUID, owner: ConsoleOwner, session: SessionDep, celery: CeleryDep, client: RedisDep
) -> Response:
    batches_api.retry_batch(batch_id, session, celery, client, owner)
    return RedirectResponse(f"/ui/batches/{batch_id}", status_code=303)


def _users(owner: str | None, asked: str, session: SessionDep, client: RedisDep) -> list[str]:
    """With a token: its owner only (the API refuses any other). Anonymous: the user asked for, the
    paused ones, and the owners of the latest parts."""
    if owner is not None:
        return [owner]
    found = set(agents.paused_users(client))
    recent = parts_api.list_parts(
        session, status_filter=None, limit=200, offset=0, owner=None, ruleset=None, filename=None
    )
    found.update(p.owner for p in recent.items if p.owner)
    users = sorted(found)[:KNOWN_USERS]
    if asked and asked not in users:
        users.insert(0, asked)
    return users


def _agents_context(owner: str | None, user: str, session: SessionDep, client: RedisDep) -> dict[str, Any]:
    states = [agents_api.agent_state(name, client) for name in _users(owner, user, session, client)]
    return {"states": states, "user": user}


UserQuery = Annotated[str, Query(max_length=100, pattern=r"^[A-Za-z0-9_.@-]*$")]


@router.get("/agents")
def agents_page(
    request: Request, owner: ConsoleOwner, session: SessionDep, client: RedisDep, user: UserQuery = ""
) -> Response:
    return render(request, "agents.html", _agents_context(owner, user, session, client), owner)


@router.get("/agents/live")
def agents_live(
    request: Request, owner: ConsoleOwner, session: SessionDep, client: RedisDep, user: UserQuery = ""
) -> Response:
    return render(request, "_agents_live.html", _agents_context(owner, user, session, client), owner)


@router.post("/agents/{user_id}/pause", dependencies=[CsrfChecked])
async def pause(user_id: agents_api.UserId, owner: ConsoleOwner, client: RedisDep) -> Response:
    await agents_api.own_agent(user_id, owner)
    await run_in_threadpool(agents_api.pause_agent, user_id, client)
    return RedirectResponse(f"/ui/agents?user={user_id}", status_code=303)


@router.post("/agents/{user_id}/resume", dependencies=[CsrfChecked])
async def resume(user_id: agents_api.UserId, owner: ConsoleOwner, client: RedisDep) -> Response:
    await agents_api.own_agent(user_id, owner)
    await run_in_threadpool(agents_api.resume_agent, user_id, client)
    return RedirectResponse(f"/ui/agents?user={user_id}", status_code=303)


@router.get("/events/{user_id}", response_class=EventSourceResponse)
async def events(user_id: agents_api.UserId, request: Request, owner: ConsoleOwner) -> EventSourceResponse:
    """GET /api/v1/agents/{user}/events for the console (its token is a cookie, which EventSource
    sends; it cannot send a bearer header)."""
    await agents_api.own_agent(user_id, owner)
    return await agents_api.agent_events(user_id, request)
