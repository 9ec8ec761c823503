"""The report: status and codes per fixture, schema, JSON safety, summary counts, progress."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.validation import FINDING_CODES, REPORT_JSON_SCHEMA, SEVERITY_BY_CODE, Report, UnreadableModelError
from app.validation.codes import (
    BBOX_DEGENERATE,
    BREP_OPEN,
    FINDINGS_TRUNCATED,
    GEOMETRY_INVALID,
    LAYER_NAME_PATTERN,
    MESH_OPEN,
    MODEL_EMPTY,
    NAME_DUPLICATE,
    NAME_MISSING,
    NAME_PATTERN,
    NAMES_TRUNCATED,
    OBJECT_FAR_OUTSIDE,
    OBJECTS_UNREADABLE,
    TOLERANCE_INVALID,
    UNITS_UNSET,
)
from app.validation.engine import _model_level
from tests.validation.reports import validate

# fixture -> (passed, set of finding codes)
EXPECTED: dict[str, tuple[bool, set[str]]] = {
    "valid_part": (True, set()),
    "bad_names": (False, {NAME_PATTERN, NAME_MISSING, NAME_DUPLICATE, LAYER_NAME_PATTERN}),
    "invalid_geometry": (False, {GEOMETRY_INVALID}),
    "open_brep": (False, {BREP_OPEN, MESH_OPEN}),
    "empty_model": (False, {MODEL_EMPTY}),
    "degenerate_bbox": (True, {BBOX_DEGENERATE}),
    "far_outlier": (True, {OBJECT_FAR_OUTSIDE}),
    "bad_units": (False, {UNITS_UNSET, TOLERANCE_INVALID}),
    "large_model": (True, {NAMES_TRUNCATED}),  # 2000 distinct names, 1000 listed
}
# fixture -> UnreadableModelError.code
UNREADABLE = {"corrupt_bytes": "corrupt", "truncated": "truncated", "not_3dm": "not_3dm"}


def test_every_generated_fixture_is_covered(models: dict[str, Path]) -> None:
    assert set(models) == set(EXPECTED) | set(UNREADABLE)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_status_and_codes(models: dict[str, Path], name: str) -> None:
    report = validate(models[name])
    passed, codes = EXPECTED[name]
    assert report["summary"]["passed"] is passed
    assert {f["code"] for f in report["findings"]} == codes


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_fixture_is_rejected(models: dict[str, Path], name: str) -> None:
    with pytest.raises(UnreadableModelError) as info:
        validate(models[name])
    assert info.value.code == UNREADABLE[name]
    assert info.value.reason


def _validate_against_schema(report: dict) -> None:
    try:
        import jsonschema
    except ImportError:
        Report.model_validate(report)
    else:
        jsonschema.validate(report, REPORT_JSON_SCHEMA)
        Report.model_validate(report)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_report_matches_schema_and_is_plain_json(models: dict[str, Path], name: str) -> None:
    report = validate(models[name])
    _validate_against_schema(report)
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert report["schema_version"] == "1.0"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_summary_counts_match_findings(models: dict[str, Path], name: str) -> None:
    report = validate(models[name])
    counts = {"error": 0, "warning": 0, "info": 0}
    for item in report["findings"]:
        assert item["code"] in FINDING_CODES
        assert item["severity"] == SEVERITY_BY_CODE[item["code"]]
        counts[item["severity"]] += 1
    summary = report["summary"]
    assert summary["counts"] == counts
    assert summary["passed"] is (counts["error"] == 0)
    assert summary["objects"] == report["metadata"]["object_count"]
    assert summary["duration_seconds"] >= 0


def test_schema_describes_the_top_level() -> None:
    assert set(REPORT_JSON_SCHEMA["properties"]) == {
        "schema_version",
        "summary",
        "metadata",
        "findings",
        "ruleset",
        "rules",
    }
    assert "Finding" in REPORT_JSON_SCHEMA["$defs"]


def test_findings_are_capped_per_code_but_all_counted(models: dict[str, Path]) -> None:
    report = validate(models["bad_names"], rules={"max_findings_per_code": 1})
    codes = [f["code"] for f in report["findings"]]
    assert codes.count(NAME_PATTERN) == 1 and codes.count(NAME_DUPLICATE) == 1
    truncated = {
        f["details"]["finding_code"]: f["details"] for f in report["findings"] if f["code"] == FINDINGS_TRUNCATED
    }
    assert truncated == {
        NAME_DUPLICATE: {"finding_code": NAME_DUPLICATE, "total": 2, "omitted": 1},
        NAME_PATTERN: {"finding_code": NAME_PATTERN, "total": 2, "omitted": 1},
    }
    assert report["summary"]["counts"] == {"error": 2, "warning": 4, "info": 2}
    _validate_against_schema(report)


def test_partially_read_object_table_is_an_error() -> None:
    loaded = SimpleNamespace(object_records=5)
    ((index, item),) = _model_level(loaded, SimpleNamespace(count=3))  # type: ignore[arg-type]
    assert (index, item["code"], item["severity"]) == (None, OBJECTS_UNREADABLE, "error")
    assert item["details"] == {"object_records": 5, "objects_read": 3}


@pytest.mark.parametrize("name", ["large_model", "valid_part", "empty_model"])
def test_progress_is_monotonic_bounded_and_ends_done(models: dict[str, Path], name: str) -> None:
    calls: list[tuple[int, str]] = []
    validate(models[name], progress=lambda percent, stage: calls.append((percent, stage)))
    percents = [p for p, _ in calls]
    assert percents == sorted(percents)
    assert calls[0] == (0, "reading") and calls[-1] == (100, "done")
    assert len(calls) <= 50
    stages = [s for _, s in calls]
    order = ["reading", "metadata", "nomenclature", "geometry", "done"]
    assert [s for s in order if s in stages] == sorted(set(stages), key=order.index)
    assert {"reading", "nomenclature", "geometry", "done"} <= set(stages)


def test_progress_on_unreadable_file_stops_at_reading(models: dict[str, Path]) -> None:
    calls: list[tuple[int, str]] = []
    with pytest.raises(UnreadableModelError):
        validate(models["not_3dm"], progress=lambda percent, stage: calls.append((percent, stage)))
    assert calls == [(0, "reading")]
