"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends

from collections.abc import Iterator

from sqlmodel import Session

from app.core.db import get_engine
from app.core.redis import get_redis
from app.worker.celery_app import celery_app


def get_celery() -> Celery:
    return celery_app


def get_session() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
