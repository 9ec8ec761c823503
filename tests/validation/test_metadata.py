"""Metadata: units, tolerances, counts by type, layers, names, user strings, bounding box."""

from __future__ import annotations

from pathlib import Path

from tests.validation.reports import validate


def test_valid_part_metadata(models: dict[str, Path]) -> None:
    meta = validate(models["valid_part"])["metadata"]
    assert meta["file_name"] == "valid_part.3dm"
    assert meta["file_size_bytes"] == models["valid_part"].stat().st_size
    assert meta["archive_version"] == 80  # rhino3dm reports version 8 archives as 80
    assert meta["unit_system"] == "Millimeters"
    assert meta["tolerances"] == {"absolute": 0.01, "angle_degrees": 1.0, "relative": meta["tolerances"]["relative"]}
    assert meta["object_count"] == 5
    assert meta["objects_by_type"] == {"Brep": 1, "Extrusion": 1, "LineCurve": 1, "Mesh": 1, "Point": 1}
    assert meta["document_user_strings"] == {"project": "LIB"}
    assert meta["bounding_box"] == {"min": [0.0, 0.0, 0.0], "max": [5000.0, 6000.0, 3000.0]}


def test_layers_carry_full_path_and_parent(models: dict[str, Path]) -> None:
    layers = {layer["full_path"]: layer for layer in validate(models["valid_part"])["metadata"]["layers"]}
    assert set(layers) == {"LIB", "LIB::Z01", "LIB::Z01::SOLID", "LIB::Z01::AXES"}
    assert layers["LIB"]["parent"] is None
    assert layers["LIB::Z01::SOLID"]["parent"] == "LIB::Z01"
    assert layers["LIB::Z01::SOLID"]["name"] == "SOLID"
    assert sorted(layer["index"] for layer in layers.values()) == [0, 1, 2, 3]
    assert all(len(layer["id"]) == 36 for layer in layers.values())


def test_named_objects_are_counted_and_listed(models: dict[str, Path]) -> None:
    named = validate(models["valid_part"])["metadata"]["named_objects"]
    assert named == {
        "count": 5,
        "unnamed": 0,
        "names": [
            "LIB-Z01-AXIS-001",
            "LIB-Z01-COLUMN-001",
            "LIB-Z01-POINT-001",
            "LIB-Z01-SLAB-001",
            "LIB-Z01-WALL-001",
        ],
        "truncated": False,
    }


def test_unnamed_objects_are_counted(models: dict[str, Path]) -> None:
    named = validate(models["bad_names"])["metadata"]["named_objects"]
    assert (named["count"], named["unnamed"]) == (5, 1)


def test_listed_names_are_capped(models: dict[str, Path]) -> None:
    named = validate(models["large_model"], rules={"max_listed_names": 10})["metadata"]["named_objects"]
    assert (named["count"], len(named["names"]), named["truncated"]) == (2000, 10, True)


def test_empty_model_has_no_bounding_box(models: dict[str, Path]) -> None:
    meta = validate(models["empty_model"])["metadata"]
    assert (meta["object_count"], meta["objects_by_type"], meta["bounding_box"]) == (0, {}, None)
    assert meta["unit_system"] == "Millimeters"


def test_unset_units_are_reported_by_name(models: dict[str, Path]) -> None:
    meta = validate(models["bad_units"])["metadata"]
    assert meta["unit_system"] == "None"
    assert meta["tolerances"]["absolute"] == 0.0


def test_large_model_counts_every_kind(models: dict[str, Path]) -> None:
    meta = validate(models["large_model"])["metadata"]
    assert meta["object_count"] == 2000
    assert meta["objects_by_type"] == {"Brep": 20, "Extrusion": 180, "LineCurve": 600, "Mesh": 300, "Point": 900}
