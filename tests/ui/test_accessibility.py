"""Every console page: no serious or critical axe-core violation, no sideways scrolling at 390 px
or at 640 px (1280 px at 200 % zoom), and a screenshot at 1280 px.

axe-core is vendored in tests/ui/vendor (version and licence in its README) and evaluated in the
page. With LIBRARIAN_UPDATE_SCREENSHOTS=1 the screenshots are written to docs/img/console-*.png.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ui.conftest import OWNER, sign_in
from tests.utils.processes import wait_until

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AXE = (HERE / "vendor" / "axe.min.js").read_text()
REAL = ROOT / "tests" / "fixtures" / "real"
SHOTS = ROOT / "docs" / "img"
BLOCKING = {"serious", "critical"}


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.evaluate(AXE)  # evaluated by the browser's debugger, not a page script: the CSP stays as served
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:5]]}
        for v in result
        if v["impact"] in BLOCKING
    ]


def overflow(page: Any) -> int:
    """How far the page is wider than the window (0: nothing to scroll sideways)."""
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


def submitted(console: Any) -> dict[str, str]:
    """A rejected part with a report and a finished batch, through the API (the pages' data)."""
    headers = {"Authorization": f"Bearer {console.token}"}
    with httpx.Client(base_url=console.url, headers=headers, timeout=30) as api:
        with (REAL / "Circles.3dm").open("rb") as model:
            part = api.post("/api/v1/parts", files={"file": ("Circles.3dm", model)})
        assert part.status_code == 202, part.text
        names = ["MeshSphere_r5.3dm", "v2_5_curves.3dm", "wall model.3dm"]
        files = [("files", (n, (REAL / n).read_bytes())) for n in names]
        batch = api.post("/api/v1/batches", files=files)
        assert batch.status_code == 202, batch.text
        part_id, batch_id = part.json()["part_id"], batch.json()["batch_id"]
        wait_until(
            lambda: api.get(f"/api/v1/parts/{part_id}").json()["status"] in ("validated", "rejected"),
            timeout=60,
            interval=0.3,
            message=console.tails(),
        )
        wait_until(
            lambda: api.get(f"/api/v1/batches/{batch_id}").json()["status"].startswith("completed"),
            timeout=60,
            interval=0.3,
            message=console.tails(),
        )
    return {"part": part_id, "batch": batch_id}


def test_axe_finds_a_planted_violation(browser):
    """The check below can fail: an unlabelled field and pale grey text are reported."""
    context = browser.new_context()
    try:
        page = context.new_page()
        planted = '<main><input><p style="color:#bbb;background:#fff">low contrast</p></main>'
        page.set_content(f'<html lang="en"><title>t</title>{planted}</html>')
        assert {"label", "color-contrast"} <= {v["id"] for v in axe_violations(page)}
    finally:
        context.close()


def test_every_page_is_accessible_fits_narrow_windows_and_is_photographed(browser, console, tmp_path):
    started = time.monotonic()
    ids = submitted(console)
    pages = {
        "upload": "/ui/upload",
        "parts": "/ui/parts",
        "part": f"/ui/parts/{ids['part']}",
        "batch": f"/ui/batches/{ids['batch']}",
        "agents": "/ui/agents",
        "system": "/ui/system",
    }
    shots = SHOTS if os.environ.get("LIBRARIAN_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    problems: dict[str, Any] = {}
    try:
        page = sign_in(context, console)
        for name, path in pages.items():
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(f"{console.url}{path}")
            page.wait_for_selector("main h1")
            if name == "part":
                page.wait_for_selector("details[data-code]")
            if name == "upload":  # as a person sees it before sending: the files and their warnings
                page.locator("#files").set_input_files([str(REAL / "Circles.3dm"), str(REAL / "SOURCES.md")])
            if found := axe_violations(page):
                problems[f"{name} (axe)"] = found
            page.screenshot(path=str(shots / f"console-{name}.png"))
            for width in (390, 640):
                page.set_viewport_size({"width": width, "height": 900})
                if (extra := overflow(page)) > 0:
                    problems[f"{name} at {width} px"] = f"{extra} px wider than the window"
            if name == "system":
                for link in ("Flower", "Grafana", "Prometheus"):
                    assert page.get_by_role("link", name=link).count() == 1, link
                assert page.get_by_test_id("health-db").inner_text() == "ok"
                assert page.get_by_test_id("health-redis").inner_text() == "ok"
                assert page.locator(".badge.w-live").count() >= 1, console.tails()
            if name == "agents":
                assert page.locator(f"tr[data-user='{OWNER}']").count() == 1
        page.set_viewport_size({"width": 1280, "height": 900})
    finally:
        context.close()

    login = browser.new_context(viewport={"width": 390, "height": 800})
    try:
        page = login.new_page()
        page.goto(f"{console.url}/ui/login")
        if found := axe_violations(page):
            problems["login (axe)"] = found
        if (extra := overflow(page)) > 0:
            problems["login at 390 px"] = f"{extra} px wider than the window"
        page.screenshot(path=str(shots / "console-login-390.png"))
    finally:
        login.close()
    assert not problems, problems
    for name in [*pages, "login-390"]:
        assert (shots / f"console-{name}.png").stat().st_size > 10_000, name
    print(f"\n[console] {len(pages) + 1} pages checked with axe-core; {time.monotonic() - started:.1f}s")
