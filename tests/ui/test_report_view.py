"""The report shaped for the Part page (app/ui/report.py): plain functions, no browser."""

from __future__ import annotations

from app.ui.report import group_findings, report_view
from app.ui.steering import stage_rows


def test_findings_are_grouped_by_code_worst_first_with_object_name_and_layer():
    findings = [
        {"code": "NAME_MISSING", "severity": "warning", "object_id": "a", "message": "m1", "layer": "Walls"},
        {"code": "GEOMETRY_INVALID", "severity": "error", "object_id": "b", "message": "m2", "object_name": "W-1"},
        {"code": "NAME_MISSING", "severity": "warning", "object_id": "c", "message": "m3"},
        {"code": "LAYER_NAME_PATTERN", "severity": "warning", "object_id": None, "message": "m4",
         "details": {"name": "bad", "full_path": "Top::bad"}},
    ]  # fmt: skip
    groups = group_findings(findings)
    assert [(g["code"], g["severity"], g["count"]) for g in groups] == [
        ("GEOMETRY_INVALID", "error", 1),
        ("LAYER_NAME_PATTERN", "warning", 1),
        ("NAME_MISSING", "warning", 2),
    ]
    assert groups[0]["rows"][0] | {} == {
        "severity": "error", "message": "m2", "object_id": "b", "name": "W-1", "layer": None,
    }  # fmt: skip
    layer_row = groups[1]["rows"][0]
    assert (layer_row["name"], layer_row["layer"]) == (None, "Top::bad")  # a layer's finding names no object
    assert groups[2]["rows"][0]["layer"] == "Walls"


def test_report_view_reads_summary_and_metadata():
    view = report_view(
        {
            "summary": {"counts": {"error": 0, "warning": 1, "info": 0}, "passed": True, "objects": 3},
            "metadata": {
                "unit_system": "Meters",
                "tolerances": {"absolute": 0.01},
                "objects_by_type": {"Point": 2, "Brep": 1},
                "layers": [{"name": "A", "full_path": "A", "objects": 3}],
            },
            "findings": [],
        }
    )
    assert view["passed"] and view["units"] == "Meters" and view["objects"] == 3
    assert view["by_type"] == [("Brep", 1), ("Point", 2)]
    assert view["layers"] == [{"path": "A", "objects": 3}]
    assert view["groups"] == []


def test_batch_stage_counts_count_an_item_done_with_the_stages_before_the_one_it_failed():
    rows = stage_rows({"parsing": 1, "classified": 2, "extract_failed": 1, "published": 3})
    by_stage = {row["stage"]: (row["running"], row["done"], row["failed"]) for row in rows}
    assert by_stage == {
        "preprocess": (0, 7, 0),
        "parse": (1, 6, 0),
        "classify": (0, 6, 0),
        "extract": (0, 3, 1),
        "validate": (0, 3, 0),
        "publish": (0, 3, 0),
    }
