"""systemd units in ops/systemd: restart policy, user, environment file, hardening, warm shutdown."""

from __future__ import annotations

import configparser
import shutil

import pytest

from .helpers import ROOT, run

UNIT_DIR = ROOT / "ops" / "systemd"
PARTS = ("api", "worker", "beat", "flower")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}


def unit(part: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(UNIT_DIR / f"librarian-{part}.service")
    return parser


@pytest.mark.parametrize("part", PARTS)
def test_unit_runs_the_part_as_librarian(part):
    service = unit(part)["Service"]
    assert service["ExecStart"].split()[:2] == ["/opt/librarian/.venv/bin/librarian", part]
    assert service["User"] == "librarian"
    assert service["Restart"] == "always"
    assert service["EnvironmentFile"] == "/etc/librarian/librarian.env"
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{part}: {key}"
    assert "/var/lib/librarian" in service["ReadWritePaths"].split()


def test_worker_waits_for_running_tasks_on_stop():
    service = unit("worker")["Service"]
    assert service["KillSignal"] == "SIGTERM"
    # Longer than the 30-minute hard task time limit (TASK_TIME_LIMIT=1800).
    assert int(service["TimeoutStopSec"]) > 1800


def test_units_pass_systemd_analyze():
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not available (optional check)")
    for part in PARTS:
        path = UNIT_DIR / f"librarian-{part}.service"
        result = run([analyze, "verify", str(path)])
        # The virtualenv is not installed here: that one complaint is expected.
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if path.name in line and "is not executable" not in line
        ]
        assert not problems, "\n".join(problems)
