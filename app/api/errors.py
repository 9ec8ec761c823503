"""Error answers: 4xx with a JSON reason for bad input, 503 when a dependency is down, never a trace."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError as SQLOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.core.errors import DependencyUnavailable
from app.core.rulesets import FileOwnedRuleset, UnknownRuleset
from app.validation.rulesets import RulesetError

log = structlog.get_logger("librarian.api")


def unavailable(dependency: str, reason: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": f"{dependency} is unavailable, retry later", "dependency": dependency, "reason": reason},
        headers={"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DependencyUnavailable)
    async def _dependency(_: Request, exc: DependencyUnavailable) -> JSONResponse:
        log.warning("dependency unavailable", dependency=exc.dependency, reason=exc.reason)
        return unavailable(exc.dependency, exc.reason)

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    @app.exception_handler(KombuOperationalError)
    async def _broker(_: Request, exc: Exception) -> JSONResponse:
        log.warning("broker unavailable", error=type(exc).__name__)
        return unavailable("redis", type(exc).__name__)

    @app.exception_handler(SQLOperationalError)  # unreachable, locked past LOCK_WAIT_S, shutting down
    @app.exception_handler(PoolTimeoutError)  # every pooled connection busy for LOCK_WAIT_S
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", error=type(exc).__name__)
        return unavailable("database", type(exc).__name__)

    @app.exception_handler(RulesetError)
    async def _bad_ruleset(_: Request, exc: RulesetError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc), "field": exc.field})

    @app.exception_handler(UnknownRuleset)
    async def _unknown_ruleset(_: Request, exc: UnknownRuleset) -> JSONResponse:
        # Raised while choosing the ruleset of a submission: the input at fault is `ruleset`.
        return JSONResponse(status_code=422, content={"detail": str(exc), "field": "ruleset"})

    @app.exception_handler(FileOwnedRuleset)
    async def _file_owned(_: Request, exc: FileOwnedRuleset) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
            for err in exc.errors()
        ]
        # FastAPI's documented shape (HTTPValidationError in /openapi.json), without echoing input.
        return JSONResponse(status_code=422, content={"detail": errors})
