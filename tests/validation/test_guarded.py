"""Hostile models through the guard and the sandbox (app/validation/guarded.py) with test limits:
every one gets a strict-JSON report that fits the schema, or is refused as unreadable, in time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.validation import Report, UnreadableModelError
from app.validation.guarded import validate_guarded
from app.validation.prescan import declared_expansion
from app.validation.rulesets import build_ruleset
from app.validation.sandbox import Limits
from tests.fixtures import hostile_3dm

LIMITS = Limits(memory_mb=512, timeout_s=20)
ROOT = Path(__file__).resolve().parents[2]
# case -> error codes its report must hold (None: the file is refused as unreadable)
EXPECTED: dict[str, set[str] | None] = {
    "self_parent_layer": {"LAYER_CYCLE"},
    "mesh_bomb": {"MODEL_TOO_LARGE"},
    "embedded_file_bomb": {"MODEL_TOO_LARGE"},
    "extreme_coordinates": {"COORDINATE_OUT_OF_RANGE"},
    "extreme_tolerance": {"TOLERANCE_INVALID"},
    "block_cycle": {"BLOCK_CYCLE"},
    "header_version_1": None,
    "deep_layer_chain": set(),
    "many_document_strings": set(),
    "block_with_many_members": set(),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hostile_3dm.generate_all(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_a_hostile_model_gets_a_bounded_strict_report_in_time(hostile: dict[str, Path], case: str) -> None:
    started = time.monotonic()
    if EXPECTED[case] is None:
        with pytest.raises(UnreadableModelError) as refused:
            validate_guarded(hostile[case], limits=LIMITS)
        assert refused.value.code == "bad_header"
        return
    report = validate_guarded(hostile[case], limits=LIMITS, file_name=f"{case}.3dm")
    assert time.monotonic() - started < LIMITS.timeout_s
    text = json.dumps(report, allow_nan=False)
    assert len(text) <= report["rules"]["max_report_bytes"]
    Report.model_validate(report)
    errors = {f["code"] for f in report["findings"] if f["severity"] == "error"}
    assert errors >= EXPECTED[case], report["findings"][:3]
    assert report["summary"]["passed"] is (not errors)


def test_the_declared_size_of_a_bomb_is_known_without_inflating_it(hostile: dict[str, Path]) -> None:
    bomb = declared_expansion(hostile["mesh_bomb"], 8)
    assert bomb.compressed_buffers == 1 and bomb.uncompressed_bytes == 85_000_000 * 12
    assert declared_expansion(hostile["embedded_file_bomb"], 8).uncompressed_bytes == 1_000_000_000
    for path in sorted((ROOT / "tests/fixtures/real").glob("*.3dm")):  # real models declare little
        assert declared_expansion(path, 8).uncompressed_bytes < 8_000_000, path.name


def test_more_objects_than_the_ruleset_allows_is_refused_before_reading(hostile: dict[str, Path]) -> None:
    ruleset = build_ruleset("small", {"max_object_count": 100})
    report = validate_guarded(hostile["block_with_many_members"], limits=LIMITS, ruleset=ruleset)
    (finding,) = report["findings"]
    assert finding["code"] == "MODEL_TOO_LARGE" and finding["details"]["object_records"] > 100
    assert report["ruleset"]["name"] == "small"
    Report.model_validate(report)


def test_a_limit_report_fits_the_schema() -> None:
    report = validate_guarded(ROOT / "tests/fixtures/real/v5_example_file.3dm", limits=Limits(512, 0.001))
    assert report["findings"][0]["code"] == "RESOURCE_LIMIT"
    Report.model_validate(report)


def test_the_operators_report_ceiling_wins_over_the_rulesets(hostile: dict[str, Path]) -> None:
    report = validate_guarded(hostile["huge_names"], limits=LIMITS, max_report_bytes=50_000)
    assert report["rules"]["max_report_bytes"] == 5_000_000 or report["rules"] == {}
    assert len(json.dumps(report, allow_nan=False)) <= 50_000
    assert any(f["code"] == "REPORT_TRUNCATED" for f in report["findings"])
