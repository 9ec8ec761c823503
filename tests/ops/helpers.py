"""Shared helpers of the ops tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "prometheus" / "rules"
ALERTS_FILE = RULES_DIR / "librarian-alerts.yml"
RECORDING_FILE = RULES_DIR / "librarian-recording.yml"


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a tool; callers put its whole output in the assertion message."""
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def load_generator(path: Path, name: str):
    """Import prometheus/generate.py or grafana/generate.py (not packages) by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def recording_names() -> set[str]:
    return {rule["record"] for rule in load_rules(RECORDING_FILE)}
