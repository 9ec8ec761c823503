"""The console's plumbing: templates, the token cookie, CSRF, and rendering a page.

Authentication is the API's own (API_TOKENS, `token_owner` in app/api/deps.py): the console asks
for a token once and keeps it in an HttpOnly, SameSite=Strict cookie scoped to /ui, checked on every
request. Mutations carry a CSRF token (double submit: a random cookie, echoed in a form field or
the X-CSRF-Token header, compared in constant time).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.api.deps import token_owner
from app.core.config import settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

PREFIX = "/ui"
TOKEN_COOKIE = "librarian_console_token"
CSRF_COOKIE = "librarian_console_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TOKEN_MAX_AGE = 7 * 24 * 3600
# Everything a page loads comes from this server; no inline script, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class LoginRequired(Exception):
    """No valid token cookie while API_TOKENS is set: the console asks for one."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def auth_on() -> bool:
    return bool(settings.api_tokens)


async def console_owner(request: Request) -> str | None:
    """The owner of the token in the cookie (None when the API is anonymous); as get_owner does for
    the API, kept on `request.state.owner` for the API functions that read it (uploads)."""
    owner = None
    if auth_on():
        token = request.cookies.get(TOKEN_COOKIE)
        owner = token_owner(token) if token else None
        if owner is None:
            raise LoginRequired(request.url.path)
    request.state.owner = owner
    return owner


ConsoleOwner = Annotated[str | None, Depends(console_owner)]


async def check_csrf(request: Request) -> None:
    """403 unless the request echoes the CSRF cookie (form field or header)."""
    expected = request.cookies.get(CSRF_COOKIE) or ""
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HTTPException(403, detail="the form has expired (CSRF check failed): reload the page and try again")


CsrfChecked = Depends(check_csrf)


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if path and path.startswith(PREFIX) and not path.startswith("//") and "\\" not in path:
        return path
    return f"{PREFIX}/"


def login_url(path: str) -> str:
    return f"{PREFIX}/login?next={quote(safe_next(path))}"


def render(
    request: Request, template: str, context: dict[str, Any], owner: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """A page or fragment, with the CSRF token (a cookie set on first sight) and the security headers."""
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    links = {"Flower": settings.FLOWER_URL, "Grafana": settings.GRAFANA_URL, "Prometheus": settings.PROMETHEUS_URL}
    base = {
        "owner": owner,
        "auth_on": auth_on(),
        "csrf": csrf,
        "csrf_field": CSRF_FIELD,
        "path": request.url.path,
        "links": {name: url for name, url in links.items() if url},
        "project": settings.PROJECT_NAME,
    }
    response = templates.TemplateResponse(request, template, {**base, **context}, status_code=status_code)
    if request.cookies.get(CSRF_COOKIE) != csrf:
        set_cookie(request, response, CSRF_COOKIE, csrf, max_age=None)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def set_cookie(request: Request, response: Any, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
