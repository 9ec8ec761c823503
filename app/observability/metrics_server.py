"""The worker's /metrics endpoint: multiprocess aggregation across the prefork pool, per scrape.

Replaces prometheus_client's `start_http_server` / `make_wsgi_app` over a registry holding a
`MultiProcessCollector` (what its multiprocess docs prescribe). That serves the same numbers, but
its collector costs ~0.6 s CPU per scrape for 50 task names x 4 queues on the 2-core
reference machine (docs/performance.md); here each scrape renders with `MultiProcessExposition`
(metrics_files.py reads, metrics_render.py renders: ~11 ms), or with prometheus_client's own
collector when `METRICS_EXPOSITION=stock`. Either way every scrape reads every process's files
afresh (nothing is served stale). The server also asks for the optional bearer token
(`METRICS_TOKEN`) and, before each scrape, marks pool children that are gone as dead (their live
gauges would otherwise count on). The API's processes render their shared directory the same way
(`MultiProcessMetrics`, used by app/api/metrics.py).
"""

from __future__ import annotations

import hmac
import os
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from app.core.config import settings
from app.observability.metrics_files import reap_dead_processes
from app.observability.metrics_render import MultiProcessExposition, StockExposition

__all__ = [
    "MultiProcessMetrics",
    "authorized",
    "make_app",
    "reap_dead_processes",
    "start_metrics_server",
]


def authorized(header: str | None) -> bool:
    if not settings.METRICS_TOKEN:
        return True
    expected = f"Bearer {settings.METRICS_TOKEN}"
    return header is not None and hmac.compare_digest(header.encode(), expected.encode())


class MultiProcessMetrics:
    """Every process's metrics in one multiprocess directory, read afresh on each render.

    The worker's server below and the API's /metrics (app/api/metrics.py) both render through it:
    processes that are gone are marked dead first, then `METRICS_EXPOSITION` chooses the exposition.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        stock = settings.METRICS_EXPOSITION == "stock"
        self.exposition = StockExposition(directory) if stock else MultiProcessExposition(directory)

    def render(self, extra_collectors: list[Any]) -> bytes:
        reap_dead_processes(self.directory)
        return self.exposition.render(extra_collectors)


def make_app(extra_collectors: list[Any]) -> Any:
    metrics = MultiProcessMetrics(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        if not authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or wrong bearer token\n"]
        body = metrics.render(extra_collectors)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds up the worker's shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def start_metrics_server(port: int, extra_collectors: list[Any], addr: str = "0.0.0.0") -> WSGIServer:
    server = make_server(addr, port, make_app(extra_collectors), _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="librarian-metrics", daemon=True).start()
    return server
