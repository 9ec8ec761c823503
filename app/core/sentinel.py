"""Redis Sentinel addresses: `REDIS_URL=sentinel://[:password@]host:port[/db];sentinel://host:port;…`.

The URL lists the sentinels, not the primary: every client asks them which node is the primary
now (and again after each connection error), so a failover needs no restart. The password in the
URL is the data nodes' (`requirepass` of the primary and replicas); the sentinels' own password is
REDIS_SENTINEL_PASSWORD and the monitored name REDIS_SENTINEL_MASTER. Celery and kombu read the
same URL form (`;`-separated), plus the transport options built here.

Pure functions: no import from the rest of `app`, no connection made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SCHEME = "sentinel"
DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelURL:
    """The sentinels to ask, and how to talk to the primary they name."""

    sentinels: tuple[tuple[str, int], ...]
    password: str | None = None  # the primary's and replicas' (requirepass)
    username: str | None = None
    db: int = 0


def is_sentinel_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() == SCHEME


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse `sentinel://[[user]:password@]host[:port][/db]` chunks separated by `;`.

    The credentials and database may be given on any chunk (kombu reads the first one's: put them
    there); two chunks that disagree are refused. Errors never quote the URL (it holds a password).
    """
    sentinels: list[tuple[str, int]] = []
    password = username = None
    db: int | None = None
    chunks = [chunk.strip() for chunk in url.split(";") if chunk.strip()]
    if not chunks:
        raise ValueError("REDIS_URL: no sentinel address")
    for n, chunk in enumerate(chunks, start=1):
        where = f"REDIS_URL sentinel address {n}"
        parts = urlsplit(chunk)
        if parts.scheme.lower() != SCHEME:
            raise ValueError(f"{where}: every address must start with sentinel://")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{where}: the port is not a number") from None
        if not parts.hostname:
            raise ValueError(f"{where}: no host")
        sentinels.append((parts.hostname, port))
        if parts.password is not None:
            chunk_password = unquote(parts.password)
            if password is not None and chunk_password != password:
                raise ValueError(f"{where}: a different password than an earlier address")
            password = chunk_password
            username = unquote(parts.username) if parts.username else None
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"{where}: the database must be a number")
            if db is not None and int(path) != db:
                raise ValueError(f"{where}: a different database than an earlier address")
            db = int(path)
    if len(set(sentinels)) != len(sentinels):
        raise ValueError("REDIS_URL: a sentinel is listed twice")
    return SentinelURL(tuple(sentinels), password=password or None, username=username, db=db or 0)


def mask_sentinel_url(url: str, mask: Any) -> str:
    """Each `;`-separated address through `mask` (config.mask_url), joined back."""
    return ";".join(str(mask(chunk.strip())) for chunk in url.split(";") if chunk.strip())


def sentinel_kwargs(password: str | None, timeout: float) -> dict[str, Any]:
    """redis-py's `sentinel_kwargs`: how to talk to the sentinels themselves. Given explicitly, so
    the data nodes' password is never sent to the sentinels (redis-py's default copies only the
    socket options, kombu's and limits' copy the password)."""
    return {"password": password or None, "socket_timeout": timeout, "socket_connect_timeout": timeout}


def transport_options(master: str, password: str | None, timeout: float) -> dict[str, Any]:
    """kombu's and Celery's Sentinel transport options (broker and result backend)."""
    return {"master_name": master, "sentinel_kwargs": sentinel_kwargs(password, timeout)}
