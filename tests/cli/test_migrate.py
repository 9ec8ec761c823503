"""`librarian migrate`: upgrades the database to head and prints the revision; a second run too."""

from __future__ import annotations

import os
import subprocess

from tests.utils.processes import cli


def test_migrate_prints_the_revision_and_is_idempotent(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", "VAR_DIR": str(tmp_path / "var")}
    for _ in range(2):
        done = subprocess.run(cli("migrate"), env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "database at revision 0003_aware_timestamps" in done.stdout
