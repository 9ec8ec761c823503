"""`librarian submit --wait` against the real API and worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.utils.processes import ROOT

pytestmark = pytest.mark.integration


def test_submit_waits_and_prints_a_result_table(api, worker, models, tmp_path):
    missing = tmp_path / "missing.3dm"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "submit",
            "--api",
            api.base_url,
            "--wait",
            "--timeout",
            "120",
            str(models["valid_part"]),
            str(models["bad_names"]),
            str(missing),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    out = result.stdout
    assert "validated" in out and "rejected" in out, out + result.stderr
    assert "cannot read" in out
    assert result.returncode == 1  # the missing file is an error


def test_submit_exits_zero_when_everything_was_checked(api, worker, models):
    result = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "submit", "--api", api.base_url, "--wait", str(models["valid_part"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated" in result.stdout


def test_submit_ruleset_chooses_the_ruleset_and_an_unknown_one_is_an_error(api, worker, tmp_path):
    import httpx

    from tests.fixtures.models_3dm import named_objects

    model = named_objects(tmp_path, ["SF-C12-D-001", "SF-C12-D-002"], "team.3dm")
    name = f"team-cli-{uuid.uuid4().hex[:6]}"
    httpx.put(f"{api.base_url}/api/v1/rulesets/{name}", json={"name_pattern": "SF-C[0-9]{2}-[A-Z]-[0-9]{3}"})

    def submit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "app.cli.main", "submit", "--api", api.base_url, "--wait", *args, str(model)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=180,
            env={**os.environ, "COLUMNS": "200"},
        )

    team, default, unknown = submit("--ruleset", name), submit(), submit("--ruleset", "nobody-here")
    assert team.returncode == 0 and "validated" in team.stdout, team.stdout + team.stderr
    assert default.returncode == 1 and "rejected" in default.stdout, default.stdout  # a rejected file
    assert unknown.returncode == 1
    assert "unknown ruleset 'nobody-here'" in unknown.stdout


def test_without_a_terminal_submit_prints_full_rows_and_json_on_request(api, worker, models):
    """Piped output: one tab-separated row per file with the whole part id, no bars; --format json
    for scripts; a rejected file makes the exit code 1."""

    def submit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "app.cli.main",
                "submit",
                "--api",
                api.base_url,
                "--wait",
                *args,
                str(models["valid_part"]),
                str(models["bad_names"]),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=180,
        )

    plain = submit()
    assert plain.returncode == 1, plain.stdout + plain.stderr
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert [(row[0], row[1]) for row in rows] == [
        (str(models["valid_part"]), "validated"),
        (str(models["bad_names"]), "rejected"),
    ]
    assert all(uuid.UUID(row[4]) for row in rows)  # whole ids, not cut at 80 columns
    assert "━" not in plain.stderr  # no progress bars off a terminal
    as_json = submit("--format", "json")
    results = json.loads(as_json.stdout)
    assert [r["status"] for r in results] == ["validated", "rejected"]
    assert results[1]["counts"]["error"] >= 1 and uuid.UUID(results[0]["part_id"])
