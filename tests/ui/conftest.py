"""The console's browser tests: a real worker and API (API_TOKENS on, a 1 MB upload limit) on a
Redis database of their own, and Playwright driving the system Chromium (tests/utils/browser.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import stack_env, start_api, start_worker
from tests.utils.browser import launch_chromium

# Shared with tests/broker and tests/observability modules, each of which flushes it and stops its
# processes when its module ends; tests/ui runs after them.
REDIS_DB = 2
OWNER = "ui-alice"
MAX_FILE_SIZE_MB = 1
LINKS = {
    "FLOWER_URL": "http://flower.invalid:5555",
    "GRAFANA_URL": "http://grafana.invalid:3000",
    "PROMETHEUS_URL": "http://prometheus.invalid:9090",
}


@dataclass
class Console:
    url: str  # the API's base URL; the console is under /ui
    token: str
    api: Any
    worker: Any

    def tails(self) -> str:
        return f"--- api ---\n{self.api.tail()}\n--- worker ---\n{self.worker.tail()}"


@pytest.fixture(scope="session")
def console(broker: Any) -> Iterator[Console]:
    token = secrets.token_hex(20)
    env = stack_env(
        REDIS_URL=broker.db_url(REDIS_DB),
        API_TOKENS=f"{OWNER}:{token}",
        MAX_FILE_SIZE_MB=str(MAX_FILE_SIZE_MB),
        PIPELINE_RETRY_BACKOFF="1",
        PIPELINE_RETRY_BACKOFF_MAX="2",
        **LINKS,
    )
    worker = start_worker(f"ui{secrets.token_hex(3)}", env=env)
    try:
        api, url = start_api("ui-api", env=env)
    except BaseException:
        worker.stop()
        raise
    try:
        yield Console(url=url, token=token, api=api, worker=worker)
    finally:
        api.stop()
        worker.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Chromium for the tests of this package only: while Playwright's sync API runs, this thread
    has a running event loop, and a later test calling asyncio.run() would fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(context: Any, console: Console) -> Any:
    """A page of `context` signed in through the login form, the way a person does it."""
    page = context.new_page()
    page.goto(f"{console.url}/ui/parts")
    assert "/ui/login" in page.url, page.url
    page.get_by_label("API token").fill(console.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console.url}/ui/parts")
    return page


@pytest.fixture
def page(browser: Any, console: Console) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    try:
        yield sign_in(context, console)
    finally:
        context.close()
