"""Flower behind basic auth, seen by a real browser: the tasks we ran, the live worker and the queues.

`librarian flower` runs against a Redis database of its own, with its own worker and API. The
worker starts with task events off (`worker_send_task_events=False`); Flower turns them on by
broadcasting `enable_events` every 5 s, which the worker must log before the workload runs — so
this also proves that Flower's auto-enable works with our worker as configured.

Debian's headless Chromium then loads `http://user:password@host/tasks` (Chromium answers the
401 challenge with the credentials of the URL and reuses them for the page's AJAX call to
/tasks/datatable), and the rendered DOM must list every task id and name of the workload.
With LIBRARIAN_UPDATE_SCREENSHOTS=1 the screenshot is written to docs/img/flower-tasks.png.

The same browser then opens /workers, /worker/<name> and /broker: they must show the live worker,
its broker connection (`redis`), its queues, and on the Broker page every queue, which needs the
worker's `inspect` replies (stats, active_queues) to reach Flower. Opening them must not make the
worker log a "Control command error".
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.utils.browser import CHROMIUM_ARGS
from tests.utils.processes import wait_until

from .helpers import ROOT

pytestmark = pytest.mark.integration

QUEUES = ("default", "maintenance", "pipeline", "validation")
DB = 5  # a Redis database of its own (1-4 other tests, 6 the live Prometheus test, 7-15 reliability)
SCREENSHOT = ROOT / "docs" / "img" / "flower-tasks.png"
CHROMIUM_FLAGS = (
    *CHROMIUM_ARGS,  # shared with the console's browser tests (tests/utils/browser.py)
    # Ours: no /dev/shm limits in containers, no scrollbars in the screenshot, and virtual time
    # that waits for the page's AJAX call before the DOM is dumped or the screenshot taken.
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",
)


def chromium_run(binary: str, profile: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile; its whole process group dies with it."""
    profile.mkdir(parents=True, exist_ok=True)
    argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        stdout, stderr = process.communicate()
        raise AssertionError(f"chromium timed out after {timeout}s: {stderr[-2000:]}") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)  # renderer/GPU helpers left behind, if any
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def browser_dom(binary: str, profile: Path, url: str, *expected: str) -> str:
    """The DOM Chromium renders for `url`, unescaped; looked at up to 3 times until it has `expected`."""
    dom = ""
    for _ in range(3):  # a loaded machine may dump before the page's AJAX data is drawn: look again
        result = chromium_run(binary, profile, "--dump-dom", url)
        assert result.returncode == 0, result.stderr[-3000:]
        dom = html.unescape(result.stdout)
        if all(text in dom for text in expected):
            break
    return dom


def test_flower_tasks_page_behind_basic_auth_lists_the_workload_in_a_browser(chromium, live_stack, tmp_path):
    started_at = time.monotonic()
    stack = live_stack(DB)
    user, password = stack.flower_auth
    tasks_url = f"{stack.flower_url}/tasks"

    # Basic auth: nothing without the right credentials.
    assert httpx.get(tasks_url, timeout=15).status_code == 401
    assert httpx.get(tasks_url, auth=(user, password + "x"), timeout=15).status_code == 401
    assert httpx.get(tasks_url, auth=(user, password), timeout=15).status_code == 200
    assert httpx.get(f"{stack.flower_url}/api/tasks", timeout=15).status_code == 401

    # Flower's periodic enable_events reached our worker (started without task events).
    stack.worker.wait_for(r"Events of group \{task\} enabled by remote", timeout=45)

    # Workload: demo jobs through the API, a failure and a health check through the broker.
    expected: dict[str, str] = {}  # task id -> task name
    with httpx.Client(base_url=stack.api_url, timeout=15) as api:
        for i in range(3):
            answer = api.post("/api/v1/tasks/test", params={"message": f"flower-{i}", "steps": 1})
            assert answer.status_code == 202, answer.text
            expected[answer.json()["task_id"]] = "librarian.demo.process"
        failing = stack.producer.send_task("librarian.demo.read_storage", args=["../x"])
        healthy = stack.producer.send_task("librarian.maintenance.health_check")
        expected[failing.id] = "librarian.demo.read_storage"
        expected[healthy.id] = "librarian.maintenance.health_check"
        api_ids = list(expected)[:3]  # the API answers only for ids it issued
        wait_until(
            lambda: all(api.get(f"/api/v1/tasks/{t}").json()["status"] == "SUCCESS" for t in api_ids),
            timeout=45,
            interval=0.3,
            message=f"the demo tasks never finished:\n{stack.worker.tail()}",
        )
    healthy.get(timeout=30)
    wait_until(
        lambda: failing.state == "FAILURE",
        timeout=30,
        interval=0.2,
        message=f"read_storage never failed:\n{stack.worker.tail()}",
    )

    # Flower has the events of every task before the browser looks.
    def flower_knows_all() -> dict:
        tasks = httpx.get(f"{stack.flower_url}/api/tasks", auth=(user, password), timeout=15).json()
        done = {t: v for t, v in tasks.items() if v.get("state") in ("SUCCESS", "FAILURE")}
        return tasks if set(expected) <= set(done) else {}

    known = wait_until(
        flower_knows_all, timeout=30, interval=0.5, message=f"Flower never saw every task:\n{stack.flower.tail()}"
    )
    assert known[failing.id]["state"] == "FAILURE"

    # The browser, logged in through the URL's credentials.
    logged_in_base = f"http://{quote(user)}:{quote(password)}@{stack.flower_url.split('://', 1)[1]}"
    logged_in_url = f"{logged_in_base}/tasks"
    dom = browser_dom(chromium, tmp_path / "profile-dom", logged_in_url, *expected)
    assert "tasks-table" in dom, dom[:3000]
    missing = {t: n for t, n in expected.items() if t not in dom}
    assert not missing, f"not on the rendered tasks page: {missing}\n{dom[:5000]}"
    for name in set(expected.values()):
        assert name in dom, name
    assert "FAILURE" in dom and "SUCCESS" in dom

    screenshot = SCREENSHOT if os.environ.get("LIBRARIAN_UPDATE_SCREENSHOTS") == "1" else tmp_path / "flower-tasks.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    result = chromium_run(
        chromium, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1400,900", logged_in_url
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert screenshot.stat().st_size > 10_000, screenshot  # a real page, not a blank or 401 one
    print(
        f"\n[flower-browser] {len(expected)} tasks listed by Flower in headless Chromium; "
        f"screenshot {screenshot}; {time.monotonic() - started_at:.1f}s in all"
    )

    # The worker's pages and the broker's, from the worker's inspect replies.
    node = f"ops{stack.worker.name.rsplit('-', 1)[1]}@{socket.gethostname()}"  # live_stack's --name
    log_start = len(stack.worker.output())
    for path in ("/workers?refresh=1", f"/worker/{quote(node)}", "/broker"):
        answer = httpx.get(f"{stack.flower_url}{path}", auth=(user, password), timeout=30)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:500]}\n{stack.flower.tail()}"

    dom = browser_dom(chromium, tmp_path / "profile-workers", f"{logged_in_base}/workers", node)
    assert node in dom, f"the live worker is not on /workers:\n{dom[:5000]}"
    row = dom.split(node, 1)[1].split("</tr>", 1)[0]
    assert ">Online<" in row, f"{node} is not shown online: {row}"

    dom = browser_dom(chromium, tmp_path / "profile-worker", f"{logged_in_base}/worker/{quote(node)}", node)
    assert f'id="workername">{node}<' in dom, dom[:5000]
    broker_tab = dom.split('id="tab-broker"', 1)[1].split("end broker tab", 1)[0]
    transport = re.search(r"<td>Transport</td>\s*<td[^>]*>([^<]*)</td>", broker_tab)
    assert transport and transport.group(1) == "redis", broker_tab[:3000]
    for queue in QUEUES:
        assert f"<td>{queue}</td>" in dom, f"queue {queue} is not on the worker page:\n{dom[:5000]}"

    dom = browser_dom(chromium, tmp_path / "profile-broker", f"{logged_in_base}/broker", *QUEUES)
    assert "queue-table" in dom and "not supported" not in dom, dom[:5000]
    assert "redis://" in dom, f"the broker URL is not shown as redis://:\n{dom[:5000]}"
    for queue in QUEUES:
        assert f'<tr id="{queue}">' in dom, f"queue {queue} is not on the broker page:\n{dom[:5000]}"

    worker_log = stack.worker.output()[log_start:]
    assert "Control command error" not in worker_log, stack.worker.tail()
    flower_log = stack.flower.output()
    for error in ("Unable to get stats", "broker is not supported", "Unable to get queues"):
        assert error not in flower_log, f"{error!r} in Flower's log:\n{stack.flower.tail()}"
