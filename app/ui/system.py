"""Console pages: System (workers, queues, broker and database health, links) and signing in/out."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.api.deps import RedisDep, token_owner
from app.api.routes import health as health_api
from app.core.workers import departed_workers
from app.observability.queues import queue_depths
from app.ui.web import TOKEN_COOKIE, TOKEN_MAX_AGE, ConsoleOwner, CsrfChecked, auth_on, render, safe_next, set_cookie

router = APIRouter()


def _system_context(client: RedisDep) -> dict[str, Any]:
    """GET /health's own answer, the queue depths and the workers whose heartbeat stopped."""
    answer = health_api.health(client)
    components = json.loads(bytes(answer.body))["components"]
    now = time.time()
    workers = []
    for worker in components["workers"].get("workers") or []:
        beat = worker.get("timestamp")
        workers.append(
            {
                **worker,
                "state": "stalled" if worker.get("stalled") else "live",
                "seen_ago": round(now - beat, 1) if beat else None,
            }
        )
    depths: dict[str, int] = {}
    dead: list[dict[str, Any]] = []
    if components["redis"]["status"] == "ok":
        try:
            depths = queue_depths(client)
            dead = departed_workers(client, {w.get("hostname") for w in workers})
        except Exception:  # noqa: BLE001 (the broker went away since /health looked: shown as down)
            components["redis"] = {"status": "down", "error": "lost during the page"}
    workers.extend({**w, "state": "dead", "seen_ago": round(now - w["last_seen"], 1)} for w in dead)
    return {"components": components, "workers": workers, "depths": depths}


@router.get("/system")
def system_page(request: Request, owner: ConsoleOwner, client: RedisDep) -> Response:
    return render(request, "system.html", _system_context(client), owner)


@router.get("/system/live")
def system_live(request: Request, owner: ConsoleOwner, client: RedisDep) -> Response:
    return render(request, "_system_live.html", _system_context(client), owner)


@router.get("/login")
def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "") -> Response:  # noqa: A002
    if not auth_on():
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login", dependencies=[CsrfChecked])
def login(
    request: Request,
    token: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",  # noqa: A002
) -> Response:
    """Check the token as the API does; keep it in an HttpOnly, SameSite=Strict cookie."""
    owner = token_owner(token.strip()) if token.strip() else None
    if owner is None:
        context = {"next": safe_next(next), "error": "That token is not one of API_TOKENS."}
        return render(request, "login.html", context, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, TOKEN_COOKIE, token.strip(), max_age=TOKEN_MAX_AGE)
    return response


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request) -> Response:
    response = RedirectResponse("/ui/login" if auth_on() else "/ui/", status_code=303)
    set_cookie(request, response, TOKEN_COOKIE, "", max_age=0)
    return response
