"""The web console in a real browser against the real stack: what a person sees and clicks.

Uploads go through the Upload page (file picker or drag and drop), the status is watched on the
page without reloading it, and the report is read off the page. API_TOKENS is on, so every test
signs in through the login form first (tests/ui/conftest.py).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.models import PIPELINE_STAGES
from tests.ui.conftest import MAX_FILE_SIZE_MB, OWNER

pytestmark = pytest.mark.integration

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
FINAL = re.compile(r"^(validated|rejected)$")


def expected_error(name: str) -> dict[str, Any]:
    """The first error finding the golden report of a real model lists."""
    golden = json.loads((REAL / "expected" / f"{name}.json").read_text())
    return next(f for f in golden["findings"] if f["severity"] == "error")


def choose(page: Any, *names: str) -> None:
    page.locator("#files").set_input_files([str(REAL / n) if (REAL / n).exists() else n for n in names])


def drop_files(page: Any, files: dict[str, bytes]) -> None:
    """Drop files on the drop zone as a person dragging them from the desktop does."""
    payload = {name: base64.b64encode(data).decode() for name, data in files.items()}
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, b64] of Object.entries(files)) {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name));
            }
            return transfer;
        }""",
        payload,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def watch_navigations(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url) if frame == page.main_frame else None)
    return seen


def test_a_model_uploaded_in_the_browser_is_watched_live_and_its_report_read(page, console):
    name = "Circles.3dm"
    known = expected_error(name)
    streams: list[str] = []
    page.on("request", lambda request: streams.append(request.url) if "/ui/events/" in request.url else None)
    page.goto(f"{console.url}/ui/upload")
    choose(page, name)
    assert page.locator("#chosen li").count() == 1
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r"/ui/parts/[0-9a-f-]{36}$"))
    part_path = page.url.removeprefix(console.url)
    navigations = watch_navigations(page)

    status = page.get_by_test_id("part-status")
    page.wait_for_function(
        "() => /^(validated|rejected)$/.test(document.querySelector('[data-testid=part-status]').textContent)",
        timeout=60_000,
    )
    assert status.inner_text() == "rejected", console.tails()
    assert navigations == [], f"the page reloaded: {navigations}"
    assert any(url.endswith(f"/ui/events/{OWNER}") for url in streams), streams  # the SSE stream was open

    # The report: counts, metadata, the known finding in its code's group with its object id.
    assert "Not passed" in page.get_by_test_id("verdict").inner_text()
    assert page.get_by_text("Millimeters").count() >= 1
    group = page.locator(f"details[data-code='{known['code']}']")
    assert group.locator("summary .badge").inner_text() == "error"
    row = group.locator("tbody tr", has_text=known["object_id"])
    assert row.is_visible()
    assert [cell.strip() for cell in row.locator("td").all_inner_texts()][1:] == [
        known["object_id"],
        "—",  # the object has no name
        "Default",  # its layer
        known["message"],
    ]

    with page.expect_download() as download:
        page.get_by_role("link", name="Download JSON report").click()
    report = json.loads(Path(download.value.path()).read_text())
    assert any(f["object_id"] == known["object_id"] for f in report["findings"])

    # Revalidate: queued again, then final again, still without a reload of the live part.
    page.get_by_role("button", name="Revalidate").click()
    page.wait_for_function(
        "() => /^(validated|rejected)$/.test(document.querySelector('[data-testid=part-status]').textContent)",
        timeout=60_000,
    )

    # The Parts list: a badge, the filters, a link back to the part.
    page.goto(f"{console.url}/ui/parts?filename=circles&status=rejected")
    row = page.locator("table.list tbody tr", has=page.locator(f"a[href='{part_path}']"))
    assert row.locator(".badge").inner_text() == "rejected"
    assert page.locator("table.list tbody tr").count() == int(page.get_by_test_id("total").inner_text())
    row.get_by_role("link", name=name).click()
    page.wait_for_url(f"{console.url}{part_path}")
    page.goto(f"{console.url}/ui/parts?filename=no-such-model")
    assert page.get_by_text("No parts match these filters").is_visible()


def test_three_dropped_files_become_a_batch_that_finishes(page, console):
    names = ["v2_23_points.3dm", "v2_5_curves.3dm", "v5_my_point_with_user_data.3dm"]
    page.goto(f"{console.url}/ui/upload")
    drop_files(page, {n: (REAL / n).read_bytes() for n in names})
    assert page.locator("#chosen li").count() == 3
    page.get_by_role("button", name="Upload 3 files as a batch").click()
    page.wait_for_url(re.compile(r"/ui/batches/[0-9a-f-]{36}$"))
    navigations = watch_navigations(page)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=batch-progress]').textContent.trim() === '3/3'",
        timeout=60_000,
    )
    assert page.get_by_test_id("batch-status").inner_text() == "completed", console.tails()
    assert navigations == []
    stages = page.get_by_test_id("stages").locator("tbody tr").all_inner_texts()
    assert [row.split() for row in stages] == [[stage, "0", "3", "0"] for stage in PIPELINE_STAGES]


def test_a_paused_user_has_tasks_held_until_resumed(page, console):
    """Pause on the Agents page, upload, see the task held; resume in a second tab while the part's
    page, left open on `queued`, turns final by itself."""
    agents = page.context.new_page()
    agents.goto(f"{console.url}/ui/agents")
    row = agents.locator(f"tr[data-user='{OWNER}']")
    row.get_by_role("button", name=f"Pause {OWNER}").click()
    try:
        assert agents.locator(f"tr[data-user='{OWNER}'] [data-testid=agent-state]").inner_text() == "paused"
        page.goto(f"{console.url}/ui/upload")
        choose(page, "v2_point_with_user_Data.3dm")
        page.get_by_role("button", name="Upload").click()
        page.wait_for_url(re.compile(r"/ui/parts/[0-9a-f-]{36}$"))
        navigations = watch_navigations(page)
        held = f"tr[data-user='{OWNER}'] [data-testid=held]"
        agents.wait_for_function(
            f'() => Number(document.querySelector("{held}").textContent) >= 1', timeout=30_000
        )  # the worker took the message and held it; the Agents page refreshes itself
        assert page.get_by_test_id("part-status").inner_text() == "queued", console.tails()
        agents.locator(f"tr[data-user='{OWNER}']").get_by_role("button", name=f"Resume {OWNER}").click()
        assert agents.locator(f"tr[data-user='{OWNER}'] [data-testid=agent-state]").inner_text() == "running"
        assert agents.locator(held).inner_text() == "0"
    finally:  # never leave the owner paused for the other tests
        headers = {"Authorization": f"Bearer {console.token}"}
        httpx.post(f"{console.url}/api/v1/agents/{OWNER}/resume", headers=headers, timeout=15)
    page.wait_for_function(
        "() => /^(validated|rejected)$/.test(document.querySelector('[data-testid=part-status]').textContent)",
        timeout=60_000,
    )
    assert navigations == [], f"the part's page reloaded: {navigations}"


def test_the_servers_refusals_are_shown_as_they_come_back(page, console, tmp_path):
    big = tmp_path / "too-big.3dm"
    big.write_bytes(b"\0" * (MAX_FILE_SIZE_MB * 1024 * 1024 + 200_000))
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    page.goto(f"{console.url}/ui/upload")
    status = page.locator("#upload-status")

    choose(page, str(big))
    assert "over the 1 MB limit" in page.locator("#chosen").inner_text()  # before anything is sent
    page.get_by_role("button", name="Upload").click()
    page.wait_for_function("() => document.querySelector('#upload-status').textContent.startsWith('Refused')")
    assert status.inner_text() == f"Refused (413): file 'too-big.3dm' is over the {MAX_FILE_SIZE_MB} MB limit"

    page.get_by_role("button", name="Clear").click()
    choose(page, str(text))
    assert "not a .3dm file" in page.locator("#chosen").inner_text()
    page.get_by_role("button", name="Upload").click()
    page.wait_for_function("() => document.querySelector('#upload-status').textContent.includes('415')")
    assert status.inner_text() == "Refused (415): 'notes.txt' is not a .3dm file"
    assert page.url.endswith("/ui/upload")


def test_sign_in_keeps_the_token_in_a_strict_httponly_cookie_and_forms_need_csrf(browser, console):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{console.url}/ui/system")
        assert "/ui/login" in page.url
        page.get_by_label("API token").fill("wrong-token")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text() == "That token is not one of API_TOKENS."
        page.get_by_label("API token").fill(console.token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{console.url}/ui/system")
        cookies = {c["name"]: c for c in context.cookies()}
        token_cookie = cookies["librarian_console_token"]
        assert token_cookie["httpOnly"] and token_cookie["sameSite"] == "Strict" and token_cookie["path"] == "/ui"
        assert page.evaluate("document.cookie") == ""  # nothing of it readable by scripts
        assert console.token not in page.content()
        csrf = cookies["librarian_console_csrf"]["value"]
    finally:
        context.close()

    # A mutating form without its CSRF token is refused, with the reason; with it, it works.
    jar = {"librarian_console_token": console.token, "librarian_console_csrf": csrf}
    with httpx.Client(base_url=console.url, cookies=jar, timeout=15) as client:
        refused = client.post(f"/ui/agents/{OWNER}/resume", data={"csrf_token": "forged"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        assert client.post(f"/ui/agents/{OWNER}/resume", data={"csrf_token": csrf}).status_code == 303
        assert client.post("/ui/agents/someone-else/pause", data={"csrf_token": csrf}).status_code == 403
        assert httpx.get(f"{console.url}/ui/parts", timeout=15).status_code == 303  # no cookie: to the login


def test_without_tokens_the_console_is_open_and_still_needs_csrf(api):
    """The session's anonymous API (API_TOKENS empty): no sign-in, any user's brake, CSRF still on."""
    with httpx.Client(base_url=api.base_url, timeout=15) as client:
        assert client.get("/ui").headers["location"] == "/ui/"
        login = client.get("/ui/login?next=/ui/system")
        assert login.status_code == 303 and login.headers["location"] == "/ui/system"
        assert client.get("/ui/login?next=https://elsewhere.example/").headers["location"] == "/ui/"
        for path in ("/ui/", "/ui/parts", "/ui/agents?user=anon-ui", "/ui/system"):
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            assert "default-src 'self'" in page.headers["content-security-policy"]
        assert 'id="owner"' in client.get("/ui/upload").text  # anonymous uploads may name an owner
        csrf = client.cookies["librarian_console_csrf"]
        assert client.post("/ui/agents/anon-ui/pause", data={}).status_code == 403
        paused = client.post("/ui/agents/anon-ui/pause", data={"csrf_token": csrf})
        assert paused.status_code == 303, paused.text
        assert "Resume anon-ui" in client.get("/ui/agents?user=anon-ui").text
        assert client.post("/ui/agents/anon-ui/resume", data={"csrf_token": csrf}).status_code == 303
        missing = client.get("/ui/parts/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404 and "unknown part" in missing.text and "<html" in missing.text
        bad = client.post("/ui/upload/part", headers={"X-CSRF-Token": csrf}, files={"file": ("x.3dm", b"")})
        assert bad.status_code == 422 and bad.json() == {"detail": "the file is empty"}
