"""A local HTTP endpoint that accepts Sentry envelopes, so tests assert on what the real SDK sends.

`SentrySink()` decompresses and parses every envelope into `items` (tests assert on contents).
`SentrySink(parse=False)` only counts requests and bytes: the benchmarks run it in their own
process, on the same cores as the worker they measure, so it does as little as possible.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def parse_envelope(raw: bytes) -> list[dict[str, Any]]:
    """The items of an envelope: [{'type': ..., 'payload': {...}}, ...]."""
    lines = raw.split(b"\n")
    items = []
    i = 1  # line 0 is the envelope header
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        header = json.loads(lines[i])
        length = header.get("length")
        if length is not None:
            rest = b"\n".join(lines[i + 1 :])
            body, remainder = rest[:length], rest[length + 1 :]
            lines = lines[: i + 1] + remainder.split(b"\n")
            i += 1
        else:
            body = lines[i + 1]
            i += 2
        try:
            payload = json.loads(body)
        except ValueError:
            payload = {"raw": body.decode(errors="replace")}
        items.append({"type": header.get("type"), "payload": payload})
    return items


def decode(raw: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return raw


class SentrySink:
    """Serves on 127.0.0.1, a free port, in a daemon thread; `dsn` points an SDK at it."""

    def __init__(self, *, parse: bool = True) -> None:
        self.items: list[dict[str, Any]] = []
        self.requests = 0
        self.bytes = 0  # as received (compressed)
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Sentry's transport expects

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                items = parse_envelope(decode(raw, self.headers.get("Content-Encoding", ""))) if parse else []
                with sink.lock:
                    sink.requests += 1
                    sink.bytes += len(raw)
                    sink.items.extend(items)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.dsn = f"http://publickey@127.0.0.1:{self.port}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [item["payload"] for item in self.items if item["type"] == kind]

    def snapshot(self) -> tuple[int, int]:
        """(requests, bytes) received so far."""
        with self.lock:
            return self.requests, self.bytes

    def close(self) -> None:
        self.server.shutdown()
