"""A real PostgreSQL 16 for the tests, from the PyPI `pgserver` wheel (runs as root, unix socket only).

The harness starts one server per session (tests/conftest.py): always for the migration tests, and
before any `app` import when LIBRARIAN_TEST_DATABASE=postgresql, so that every test and subprocess
uses it. Each stack gets a database of its own, as each gets its own SQLite file on SQLite.
"""

from __future__ import annotations

import re
import uuid
import warnings
from pathlib import Path
from typing import Any

# Not UTC, so that a timestamp read back in the session's zone instead of UTC shows up in a test.
SESSION_TIMEZONE = "America/New_York"


def start_server(data_dir: Path) -> Any:
    """The pgserver on `data_dir` (started, or the one already running there)."""
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (root in a container)
        warnings.simplefilter("ignore")
        import pgserver  # on first use: its import warns (above), and SQLite-only runs never need it

        return pgserver.get_server(data_dir, cleanup_mode="stop")


def new_database(server: Any, label: str = "t") -> str:
    """A new, empty database on the server; its psycopg 3 URL (postgresql+psycopg://…?host=<socket dir>)."""
    name = f"{re.sub(r'[^a-z0-9_]', '_', label.lower())[:40]}_{uuid.uuid4().hex[:8]}"
    server.psql(f"CREATE DATABASE {name};")
    server.psql(f"ALTER DATABASE {name} SET timezone TO '{SESSION_TIMEZONE}';")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    base, query = uri.split("?", 1)
    return f"{base.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://')}/{name}?{query}"
