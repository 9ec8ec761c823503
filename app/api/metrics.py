"""The API's /metrics: HTTP metrics (prometheus-fastapi-instrumentator), tasks sent, broker gauges.

`librarian api` (one process or `--workers N`) sets PROMETHEUS_MULTIPROC_DIR before the app is
imported: every process writes prometheus_client's multiprocess files into that directory, and
each scrape, whichever process answers it, renders all of them (`MultiProcessMetrics`, as the
worker's /metrics does) plus the broker gauges read at that moment. Without the variable (the app
built in a test process, or started by plain `uvicorn`) the process serves its own registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, multiprocess
from prometheus_fastapi_instrumentator import Instrumentator

from app.core.redis import get_redis
from app.observability import metrics  # noqa: F401  (task counters: tasks sent from the API)
from app.observability.metrics_server import MultiProcessMetrics, authorized
from app.observability.queues import BrokerCollector

_collector: BrokerCollector | None = None


def require_metrics_token(authorization: Annotated[str | None, Header()] = None) -> None:
    if not authorized(authorization):
        raise HTTPException(401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def install_metrics(app: FastAPI) -> None:
    global _collector
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if _collector is None:  # one collector per process, however many apps are built (tests)
        _collector = BrokerCollector(get_redis, include_workers=True)
        if not directory:
            REGISTRY.register(_collector)
    instrumentator = Instrumentator(
        should_group_status_codes=True,
        should_ignore_untemplated=True,
        excluded_handlers=["/metrics"],
    ).instrument(app, metric_namespace="librarian")
    if not directory:
        instrumentator.expose(app, include_in_schema=False, dependencies=[Depends(require_metrics_token)])
        return
    every_process = MultiProcessMetrics(Path(directory))
    collectors = [_collector]

    # A plain def: the files are read in the threadpool, never on the event loop.
    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require_metrics_token)])
    def metrics_endpoint() -> Response:
        return Response(every_process.render(collectors), media_type=CONTENT_TYPE_LATEST)


def process_exiting() -> None:
    """At an API process's shutdown: its live gauges stop counting (each scrape also reaps the
    processes that died without saying so)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())
