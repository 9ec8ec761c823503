"""Reliability suite: fault injection against real processes. Soak variants run only with LIBRARIAN_SOAK=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LIBRARIAN_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak test: set LIBRARIAN_SOAK=1 to run it")
    for item in items:
        if "soak" in item.keywords and HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)
