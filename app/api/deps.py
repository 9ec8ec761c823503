"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, Query
from sqlmodel import Session

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


def get_session() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
RedisDep = Annotated[redis.Redis, Depends(get_redis_client)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
RulesetQuery = Annotated[
    str | None, Query(description="A ruleset name (GET /api/v1/rulesets); default: DEFAULT_RULESET")
]
