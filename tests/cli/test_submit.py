"""`librarian submit --wait` against the real API and worker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.utils.processes import ROOT

pytestmark = pytest.mark.integration


def test_submit_waits_and_prints_a_result_table(api, worker, models, tmp_path):
    missing = tmp_path / "missing.3dm"
    result = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "submit", "--api", api.base_url, "--wait", "--timeout", "120",
         str(models["valid_part"]), str(models["bad_names"]), str(missing)],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )
    out = result.stdout
    assert "validated" in out and "rejected" in out, out + result.stderr
    assert "cannot read" in out
    assert result.returncode == 1  # the missing file is an error


def test_submit_exits_zero_when_everything_was_checked(api, worker, models):
    result = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "submit", "--api", api.base_url, "--wait", str(models["valid_part"])],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated" in result.stdout
