"""Finding (or installing) the Debian tools the browser and ops tests drive, and launching Chromium.

A missing binary is installed with apt-get when running as root; otherwise the tests that need it
are skipped with the reason, or FAIL when CI=true. Playwright drives the system Chromium
(`executable_path`): Playwright's own browser download cannot work here.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Flags for headless Chromium in a container, shared by tests/ops and tests/ui.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _which(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    fallback = Path("/usr/bin") / binary
    return str(fallback) if os.access(fallback, os.X_OK) else None


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


@functools.cache
def _apt_get(*args: str) -> str:
    """Run apt-get once per argument list; return '' on success, else why it failed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`apt-get {' '.join(args)}` could not run: {exc}"
    if result.returncode:
        return f"`apt-get {' '.join(args)}` exited {result.returncode}: {_tail(result.stderr)}"
    return ""


@functools.cache
def find_or_install(binary: str, apt_package: str) -> tuple[str | None, str]:
    """Return (path, '') or (None, reason)."""
    found = _which(binary)
    if found:
        return found, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, f"not on PATH nor in /usr/bin, and not root, so `apt-get install {apt_package}` was not tried"
    if not shutil.which("apt-get"):
        return None, f"not on PATH nor in /usr/bin, and there is no apt-get to install `{apt_package}`"
    print(f"\n[tests] {binary} missing: apt-get install -y {apt_package} ...", file=sys.stderr)
    error = _apt_get("update") or _apt_get("install", "-y", "--no-install-recommends", apt_package)
    if error:
        return None, error
    found = _which(binary)
    return (found, "") if found else (None, f"`apt-get install {apt_package}` succeeded but {binary} is still missing")


def require(binary: str, apt_package: str) -> str:
    """The binary's path; skip the test with the reason (FAIL when CI=true) when it cannot be had."""
    path, reason = find_or_install(binary, apt_package)
    if path:
        return path
    message = f"{binary} not found and could not be installed: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: these tests must run in CI)", pytrace=False)
    pytest.skip(f"{message}. THESE TESTS DID NOT RUN; install the Debian package `{apt_package}`.")


def chromium_path() -> str:
    """Debian's `chromium`, found or installed."""
    return require("chromium", "chromium")


def launch_chromium(playwright: Any, **options: Any) -> Any:
    """The system Chromium under Playwright (sync API), headless with the shared flags."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS), **options)
