"""The FastAPI application: routers gathered in one place, middleware, start-up and shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sentry_sdk
import structlog
from asgi_correlation_id import CorrelationIdMiddleware
from celery.result import denied_join_result
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.api.deps import get_owner
from app.api.docs_assets import install_docs
from app.api.errors import install_error_handlers
from app.api.metrics import install_metrics, process_exiting
from app.api.routes import agents, batches, diagnostics, health, parts, rulesets, tasks
from app.api.schemas import ErrorBody
from app.core.config import settings
from app.core.db import init_db, session_scope, with_startup_retries
from app.core.redis import close_async_pool, close_pool
from app.core.rulesets import sync_files
from app.observability.logging import configure_logging
from app.observability.sentry import init_sentry
from app.ui import install_ui
from app.validation.rulesets import RulesetError

log = structlog.get_logger("librarian.api.access")

# Every /api/v1 call passes the bearer-token check (API_TOKENS); /health*, /metrics and the docs
# stay outside it.
api_router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(get_owner)],
    responses={401: {"model": ErrorBody, "description": "Missing or wrong bearer token (API_TOKENS is set)"}},
)
api_router.include_router(tasks.router)
api_router.include_router(parts.router)
api_router.include_router(batches.router)
api_router.include_router(rulesets.router)
api_router.include_router(agents.router)
api_router.include_router(diagnostics.router)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    configure_logging("api")
    init_sentry("api")
    logger = structlog.get_logger("librarian.api")
    try:
        with_startup_retries(init_db)
    except Exception as exc:  # noqa: BLE001 (the API still starts; /health reports the database as down)
        logger.error("database init failed", error=type(exc).__name__)

    def sync() -> None:
        with session_scope() as session:
            sync_files(session)

    try:
        with_startup_retries(sync)
    except RulesetError as exc:  # a bad ruleset file: refuse to start (uvicorn exits non-zero)
        logger.critical("rulesets unusable, not starting", error=str(exc), field=exc.field)
        raise
    except SQLAlchemyError as exc:  # the files were checked; storing them waits for the next start
        logger.error("rulesets not synced: database unavailable", error=type(exc).__name__)
    # The API never waits on a result (GET /tasks/{id} reads the stored state): without this, every
    # send_task SUBSCRIBEs to the task's result channel and its AsyncResult UNSUBSCRIBEs when
    # collected, two round trips per submit on a shared pub/sub connection, ~1 ms of the API's CPU
    # (docs/performance.md). Celery's own switch, as its workers set it.
    with denied_join_result():
        yield
    close_pool()
    await close_async_pool()
    process_exiting()


class AccessLogMiddleware:
    """Our own access line (uvicorn's is off), written inside the request-id context, so it is bound.

    A plain ASGI middleware: it was an `@app.middleware("http")` function, whose BaseHTTPMiddleware
    runs every request through an extra anyio task group and memory stream (Starlette's docs advise
    pure ASGI middleware where speed matters). Same line, same moment: when the response starts,
    with the time taken until then.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response_started = False

        async def send_logged(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                log.info(
                    "request",
                    method=scope["method"],
                    path=URL(scope=scope).path,
                    status=message["status"],
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except Exception as exc:
            if response_started:  # too late for a 500: let the server close the connection
                raise
            # Answer the 500 here: Starlette's outer error middleware would re-raise and uvicorn would
            # drop the keep-alive connection. Reported to Sentry once, logged once, no trace to clients.
            sentry_sdk.capture_exception(exc)
            structlog.get_logger("librarian.api").error(
                "unhandled error", error=type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__)
            )
            await JSONResponse(status_code=500, content={"detail": "internal error"})(scope, receive, send_logged)


def create_app() -> FastAPI:
    app = FastAPI(
        title=settings.PROJECT_NAME,
        version=__version__,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # /docs and /redoc come from install_docs: vendored assets, no CDN
        redoc_url=None,
        description="Async jobs with observability built in: validate Rhino .3dm models at scale.",
    )
    install_error_handlers(app)
    app.add_middleware(AccessLogMiddleware)  # inside the request-id middleware added next
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    app.include_router(api_router)
    app.include_router(health.router)
    install_docs(app)
    install_ui(app)  # the web console under /ui (docs/console.md)
    install_metrics(app)
    return app


app = create_app()
