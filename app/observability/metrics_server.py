"""The worker's /metrics endpoint: multiprocess aggregation across the prefork pool, per scrape.

Replaces prometheus_client's `start_http_server` / `make_wsgi_app` over a registry holding a
`MultiProcessCollector` (what its multiprocess docs prescribe). That serves the same numbers, but
its collector costs ~0.6 s CPU per scrape for 50 task names x 4 queues on the 2-core
reference machine (docs/performance.md); here each scrape renders with `MultiProcessExposition`
(metrics_files.py reads, metrics_render.py renders: ~11 ms), or with prometheus_client's own
collector when `METRICS_EXPOSITION=stock`. Either way every scrape reads every process's files
afresh (nothing is served stale). The server also asks for the optional bearer token
(`METRICS_TOKEN`) and, before each scrape, marks pool children that are gone as dead (their live
gauges would otherwise count on).
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

__all__ = ["authorized", "make_app", "prepare_multiprocess_dir", "reap_dead_processes", "start_metrics_server"]


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty the directory: files of a previous run would be summed into this one's numbers."""
    path.mkdir(parents=True, exist_ok=True)
    for item in path.iterdir():
        if item.is_file():
            item.unlink()


def authorized(header: str | None) -> bool:
    if not settings.METRICS_TOKEN:
        return True
    expected = f"Bearer {settings.METRICS_TOKEN}"
    return header is not None and hmac.compare_digest(header.encode(), expected.encode())


def make_app(extra_collectors: list[Any]) -> Any:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    stock = settings.METRICS_EXPOSITION == "stock"
    exposition = StockExposition(directory) if stock else MultiProcessExposition(directory)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        if not authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or wrong bearer token\n"]
        reap_dead_processes(directory)
        body = exposition.render(extra_collectors)
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
