"""The worker's /metrics endpoint: multiprocess aggregation across the prefork pool, per scrape."""

from __future__ import annotations

import hmac
import os
import re
import threading
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, ThreadingWSGIServer

from app.core.config import settings

_LIVE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty the directory: files of a previous run would be summed into this one's numbers."""
    path.mkdir(parents=True, exist_ok=True)
    for item in path.iterdir():
        if item.is_file():
            item.unlink()


def reap_dead_processes(path: Path) -> None:
    """mark_process_dead for pool children that are gone (also the SIGKILLed ones, which never say so)."""
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if not match:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(path))
        except PermissionError:
            pass


def authorized(header: str | None) -> bool:
    if not settings.METRICS_TOKEN:
        return True
    expected = f"Bearer {settings.METRICS_TOKEN}"
    return header is not None and hmac.compare_digest(header.encode(), expected.encode())


def make_app(extra_collectors: list[Any]) -> Any:
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        if not authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"missing or wrong bearer token\n"]
        reap_dead_processes(directory)
        registry = CollectorRegistry()  # fresh per scrape, as the multiprocess docs prescribe
        multiprocess.MultiProcessCollector(registry, path=str(directory))
        for collector in extra_collectors:
            registry.register(collector)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [generate_latest(registry)]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def start_metrics_server(port: int, extra_collectors: list[Any], addr: str = "0.0.0.0") -> WSGIServer:
    server = make_server(addr, port, make_app(extra_collectors), ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="librarian-metrics", daemon=True).start()
    return server
