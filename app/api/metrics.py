"""The API's /metrics: HTTP metrics (prometheus-fastapi-instrumentator), tasks sent, broker gauges."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from prometheus_client import REGISTRY
from prometheus_fastapi_instrumentator import Instrumentator

from app.core.config import settings
from app.core.redis import get_redis
from app.observability import metrics  # noqa: F401  (task counters: tasks sent from the API)
from app.observability.queues import BrokerCollector

_collector: BrokerCollector | None = None


def require_metrics_token(authorization: Annotated[str | None, Header()] = None) -> None:
    if not settings.METRICS_TOKEN:
        return
    expected = f"Bearer {settings.METRICS_TOKEN}"
    if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
        raise HTTPException(401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def install_metrics(app: FastAPI) -> None:
    global _collector
    if _collector is None:  # one collector per process, however many apps are built (tests)
        _collector = BrokerCollector(get_redis, include_workers=True)
        REGISTRY.register(_collector)
    Instrumentator(
        should_group_status_codes=True,
        should_ignore_untemplated=True,
        excluded_handlers=["/metrics"],
    ).instrument(app, metric_namespace="librarian").expose(
        app, include_in_schema=False, dependencies=[Depends(require_metrics_token)]
    )
