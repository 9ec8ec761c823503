"""Dependencies shared by the routers, as Annotated aliases; the bearer-token check of /api/v1."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from app.core.config import settings
from app.core.db import get_engine
from app.core.redis import get_redis
from app.worker.celery_app import celery_app


# The two dependencies below are `async def` although they do no I/O: FastAPI runs a plain `def`
# dependency in the thread pool, a thread hand-off per dependency per request (the endpoints that
# use them already pay one for themselves). They only return shared, thread-safe objects.
async def get_celery() -> Celery:
    return celery_app


async def get_redis_client() -> redis.Redis:
    return get_redis()


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="APIToken",
    description="A token of API_TOKENS (`owner:token` pairs); required when API_TOKENS is set. "
    "The request acts as the token's owner.",
)


def token_owner(given: str) -> str | None:
    """The owner of `given` among API_TOKENS. Every token is compared, each in constant time."""
    found = None
    for token, owner in settings.api_tokens:
        if hmac.compare_digest(token.encode(), given.encode()):
            found = owner
    return found


async def get_owner(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str | None:
    """The caller's owner name from `Authorization: Bearer <token>`, None when API_TOKENS is empty
    (the anonymous API); 401 for a missing or unknown token. Kept on `request.state.owner` for the
    code that reads the request itself (app/api/uploads.py)."""
    owner = None
    if settings.api_tokens:
        owner = token_owner(credentials.credentials) if credentials else None
        if owner is None:
            raise HTTPException(401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    request.state.owner = owner
    return owner


def get_session() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
RedisDep = Annotated[redis.Redis, Depends(get_redis_client)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
OwnerDep = Annotated[str | None, Depends(get_owner)]
RulesetQuery = Annotated[
    str | None, Query(description="A ruleset name (GET /api/v1/rulesets); default: DEFAULT_RULESET")
]
