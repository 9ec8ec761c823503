"""The web console under /ui (docs/console.md): server-rendered Jinja2 pages over the API's own
functions, htmx (vendored in static/vendor/) for the live parts, no build step and no CDN."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.ui import parts, steering, system
from app.ui.web import HERE, PREFIX, LoginRequired, console_owner, login_url, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
router.include_router(parts.router)
router.include_router(steering.router)
router.include_router(system.router)


@router.get("")
def console_root() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


# Answers the console's scripts read as JSON (fetch), not as pages.
JSON_PATHS = (f"{PREFIX}/upload/",)


def _wants_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith(PREFIX) and not path.startswith(JSON_PATHS) and "/static/" not in path


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if not _wants_page(request) or request.headers.get("hx-request"):
        headers = {"HX-Redirect": login_url(request.headers.get("hx-current-url-path", exc.path))}
        return JSONResponse({"detail": "sign in to the console first"}, status_code=401, headers=headers)
    return RedirectResponse(login_url(exc.path), status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    """A console page's 4xx as a page carrying the API's `detail`; everything else as before."""
    assert isinstance(exc, StarletteHTTPException)
    if not _wants_page(request) or request.headers.get("hx-request"):
        return await http_exception_handler(request, exc)
    try:
        owner = await console_owner(request)
    except LoginRequired:
        owner = None
    return render(request, "error.html", {"status": exc.status_code, "detail": exc.detail}, owner, exc.status_code)


def install_ui(app: FastAPI) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
