"""Geometry: invalid objects, open solids, degenerate boxes, far-away objects, units and tolerances."""

from __future__ import annotations

from pathlib import Path

import rhino3dm

from app.validation.codes import (
    BBOX_DEGENERATE,
    BREP_OPEN,
    GEOMETRY_INVALID,
    MESH_OPEN,
    OBJECT_FAR_OUTSIDE,
    TOLERANCE_INVALID,
    TOLERANCE_LARGE,
    UNITS_UNSET,
)
from tests.fixtures.models_3dm import ModelBuilder, add_valid_parts
from tests.validation.reports import validate


def _codes(report: dict) -> list[str]:
    return sorted(f["code"] for f in report["findings"])


def _find(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def test_valid_part_has_no_geometry_findings(models: dict[str, Path]) -> None:
    report = validate(models["valid_part"])
    assert (report["summary"]["passed"], report["findings"]) == (True, [])


def test_invalid_objects_are_errors_and_nothing_else(models: dict[str, Path]) -> None:
    report = validate(models["invalid_geometry"])
    assert _codes(report) == [GEOMETRY_INVALID, GEOMETRY_INVALID]
    assert sorted(f["details"]["kind"] for f in report["findings"]) == ["LineCurve", "Mesh"]
    assert report["summary"]["passed"] is False


def test_open_polysurface_and_open_objects_on_solid_layer(models: dict[str, Path]) -> None:
    report = validate(models["open_brep"])
    assert _codes(report) == [BREP_OPEN, BREP_OPEN, MESH_OPEN]
    assert sorted(f["details"]["expected_because"] for f in _find(report, BREP_OPEN)) == ["polysurface", "solid layer"]
    assert report["summary"]["passed"] is False


def test_open_polysurfaces_allowed_when_rule_is_off(models: dict[str, Path]) -> None:
    report = validate(models["open_brep"], rules={"polysurfaces_must_be_closed": False})
    assert [f["details"]["expected_because"] for f in _find(report, BREP_OPEN)] == ["solid layer"]


def test_solid_layer_pattern_is_configurable(models: dict[str, Path]) -> None:
    report = validate(models["open_brep"], rules={"solid_layer_pattern": "^VOLUMES$"})
    assert _codes(report) == [BREP_OPEN]


def test_zero_size_valid_curve_is_degenerate_warning(models: dict[str, Path]) -> None:
    report = validate(models["degenerate_bbox"])
    (item,) = report["findings"]
    assert (item["code"], item["severity"], item["details"]["kind"]) == (BBOX_DEGENERATE, "warning", "NurbsCurve")
    assert item["details"]["box"] == {"min": [1000.0, 1000.0, 0.0], "max": [1000.0, 1000.0, 0.0]}
    assert report["summary"]["passed"] is True


def test_far_away_point_is_flagged(models: dict[str, Path]) -> None:
    report = validate(models["far_outlier"])
    (item,) = report["findings"]
    assert item["code"] == OBJECT_FAR_OUTSIDE
    assert item["details"]["centre"] == [1e9, 0.0, 0.0]
    assert item["details"]["distance"] > item["details"]["limit"]
    assert report["summary"]["passed"] is True


def test_far_outside_factor_and_minimum_population(models: dict[str, Path]) -> None:
    assert validate(models["far_outlier"], rules={"far_outside_factor": 1e9})["findings"] == []
    assert validate(models["far_outlier"], rules={"far_outside_min_objects": 7})["findings"] == []


def test_spread_out_large_model_has_no_outliers(models: dict[str, Path]) -> None:
    report = validate(models["large_model"], rules={"max_listed_names": 2000})
    assert (report["summary"]["passed"], report["findings"]) == (True, [])


def test_unset_units_and_zero_tolerance(models: dict[str, Path]) -> None:
    report = validate(models["bad_units"])
    assert _codes(report) == [TOLERANCE_INVALID, UNITS_UNSET]
    assert all(f["object_id"] is None for f in report["findings"])


def test_absurdly_large_tolerance_for_the_unit(tmp_path: Path) -> None:
    builder = ModelBuilder(units=rhino3dm.UnitSystem.Meters, tolerance=0.5)
    add_valid_parts(builder)
    report = validate(builder.write(tmp_path / "loose.3dm"))
    (item,) = report["findings"]
    assert (item["code"], item["severity"], item["details"]["metres"]) == (TOLERANCE_LARGE, "warning", 0.5)
    assert validate(tmp_path / "loose.3dm", rules={"max_absolute_tolerance_m": 1.0})["findings"] == []


def test_open_objects_are_not_also_reported_flat(models: dict[str, Path]) -> None:
    # The plane face on the SOLID layer is open *and* flat; it is reported once, as BREP_OPEN.
    assert BBOX_DEGENERATE not in _codes(validate(models["open_brep"]))
