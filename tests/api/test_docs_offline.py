"""/docs and /redoc work offline: headless Chromium with every route but 127.0.0.1 cut renders
the operations, from the assets vendored in app/api/docs_assets/."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import require

pytestmark = pytest.mark.integration

UPLOAD_OPERATION = "upload_part_api_v1_parts_post"


def dead_port() -> int:
    """A port nothing listens on (bound then released): the proxy every non-loopback request hits."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_dom(url: str, profile: Path, timeout: float = 90) -> str:
    """The DOM of `url` after its scripts ran, in a Chromium that can reach 127.0.0.1 only: every
    other name resolves to nothing and every other request goes to a dead proxy."""
    chromium = require("chromium", "chromium")
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{dead_port()}",
        "--proxy-bypass-list=127.0.0.1",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)  # helpers left behind, if any
    assert process.returncode == 0, stderr[-2000:]
    return stdout


def external_urls(html: str) -> list[str]:
    return [
        u
        for u in re.findall(r"""(?:src|href)=["']?(https?://[^"' >]+)""", html)
        if not u.startswith("http://127.0.0.1")
    ]


def test_the_docs_pages_name_no_outside_url(http):
    for path in ("/docs", "/redoc"):
        page = http.get(path)
        assert page.status_code == 200
        assert external_urls(page.text) == [], path
        for asset in re.findall(r"""(/docs-assets/[\w.-]+)""", page.text):
            answer = http.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 500, asset


def test_this_chromium_really_is_offline(tmp_path):
    # The control: with the same flags, a CDN page does not load (Chromium shows its error page).
    dom = offline_dom("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css", tmp_path / "profile")
    assert ".swagger-ui" not in dom


def test_swagger_ui_lists_the_operations_offline(api, tmp_path):
    paths = httpx.get(f"{api.base_url}/openapi.json").json()["paths"]
    assert UPLOAD_OPERATION in {op["operationId"] for p in paths.values() for op in p.values()}
    dom = offline_dom(f"{api.base_url}/docs", tmp_path / "profile")
    assert f'id="operations-parts-{UPLOAD_OPERATION}"' in dom, dom[-3000:]
    assert 'data-path="/api/v1/parts"' in dom and 'data-path="/api/v1/batches"' in dom


def test_redoc_lists_the_operations_offline(api, tmp_path):
    dom = offline_dom(f"{api.base_url}/redoc", tmp_path / "profile")
    assert f"operation/{UPLOAD_OPERATION}" in dom, dom[-3000:]
    assert "/api/v1/batches" in dom
