"""Fixtures for the ops tests: the paths of the project and of the Prometheus tool binaries.

promtool/prometheus come from the Debian package `prometheus`, amtool from
`prometheus-alertmanager`. A missing binary is installed with apt-get when running as root;
otherwise the tests that need it are skipped with the reason, or FAIL when CI=true.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT


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


@functools.lru_cache(maxsize=None)
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


@functools.lru_cache(maxsize=None)
def find_or_install(binary: str, apt_package: str) -> tuple[str | None, str]:
    """Return (path, '') or (None, reason)."""
    found = _which(binary)
    if found:
        return found, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, f"not on PATH nor in /usr/bin, and not root, so `apt-get install {apt_package}` was not tried"
    if not shutil.which("apt-get"):
        return None, f"not on PATH nor in /usr/bin, and there is no apt-get to install `{apt_package}`"
    print(f"\n[tests/ops] {binary} missing: apt-get install -y {apt_package} ...", file=sys.stderr)
    error = _apt_get("update") or _apt_get("install", "-y", "--no-install-recommends", apt_package)
    if error:
        return None, error
    found = _which(binary)
    return (found, "") if found else (None, f"`apt-get install {apt_package}` succeeded but {binary} is still missing")


def require(binary: str, apt_package: str) -> str:
    path, reason = find_or_install(binary, apt_package)
    if path:
        return path
    message = f"{binary} not found and could not be installed: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: the ops tests must run in CI)", pytrace=False)
    pytest.skip(f"{message}. THESE OPS TESTS DID NOT RUN; install the Debian package `{apt_package}`.")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus_server() -> str:
    """The `prometheus` server binary (same Debian package as promtool)."""
    return require("prometheus", "prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require("amtool", "prometheus-alertmanager")
