"""Session-scoped generated .3dm fixtures for the validation unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.models_3dm import generate_all

LARGE_OBJECTS = 2000  # the benchmark uses 20000; the unit suite stays fast


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> path of every generated fixture (see tests/fixtures/models_3dm.py)."""
    return generate_all(tmp_path_factory.mktemp("models_3dm"), large_objects=LARGE_OBJECTS)
