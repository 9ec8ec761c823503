"""Team conventions from a ruleset, severity overrides, blocks, and checks that raise on one object."""

from __future__ import annotations

from pathlib import Path

import pytest
import rhino3dm as r3

from app.validation.rules import ValidationRules
from app.validation.walk import walk_objects
from tests.fixtures.models_3dm import ModelBuilder, add_valid_parts, box_brep
from tests.validation.reports import validate


def codes(report: dict) -> list[str]:
    return sorted(f["code"] for f in report["findings"])


@pytest.fixture(scope="module")
def blocks_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The valid part plus a block "door 1" (one brep member) placed once, with user text on the wall."""
    b = ModelBuilder()
    add_valid_parts(b)
    member = b.attrs("", "LIB::Z01::PARTS")
    index = b.model.InstanceDefinitions.Add(
        "door 1", "", "", "", r3.Point3d(0, 0, 0), (box_brep(0, 0, 0, 10),), (member,)
    )
    idef = b.model.InstanceDefinitions.FindIndex(index)
    b.model.Objects.AddInstanceObject(
        r3.InstanceReference(idef.Id, r3.Transform.Translation(100, 0, 0)), b.attrs("LIB-Z01-DOOR-001")
    )
    wall = b.model.Objects[0].Attributes
    wall.SetUserString("Phase", "2")
    return b.write(tmp_path_factory.mktemp("conventions") / "blocks.3dm")


def test_the_default_rules_pass_a_model_with_a_block(blocks_model: Path) -> None:
    report = validate(blocks_model)
    assert report["summary"]["passed"], report["findings"]
    blocks = report["metadata"]["block_definitions"]
    assert blocks["count"] == 1 and blocks["member_objects"] == 1 and blocks["instances"] == 1
    assert blocks["definitions"] == [
        {"name": "door 1", "id": blocks["definitions"][0]["id"], "objects": 1, "instances": 1}
    ]
    # rhino3dm's own count includes the block member; the unnamed member is not a NAME_MISSING
    assert report["summary"]["objects"] == len(r3.File3dm.Read(str(blocks_model)).Objects) == 7
    assert "NAME_MISSING" not in codes(report) and "BBOX_DEGENERATE" not in codes(report)


def test_per_layer_counts_add_up_to_the_objects(blocks_model: Path) -> None:
    report = validate(blocks_model)
    by_path = {layer["full_path"]: layer["objects"] for layer in report["metadata"]["layers"]}
    assert sum(by_path.values()) == report["summary"]["objects"]
    assert by_path["LIB::Z01::SOLID"] == 3


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"required_layers": ["LIB::Z01::SOLID"]}, []),
        ({"required_layers": ["LIB::Z02::SOLID", "LIB::Z01"]}, ["LAYER_MISSING"]),
        ({"allowed_layer_names": ["LIB", "Z01", "SOLID", "AXES", "PARTS"]}, []),
        ({"allowed_layer_names": ["LIB", "Z01", "SOLID"]}, ["LAYER_NOT_ALLOWED", "LAYER_NOT_ALLOWED"]),
        ({"allowed_object_types": ["Brep", "Extrusion", "Mesh", "Curve", "Point", "InstanceReference"]}, []),
        ({"allowed_object_types": ["Brep", "Mesh", "Curve", "Point"]}, ["OBJECT_TYPE_NOT_ALLOWED"] * 2),
        ({"required_units": "Millimeters"}, []),
        ({"required_units": "Meters"}, ["UNITS_MISMATCH"]),
        ({"block_name_pattern": "[a-z]+ [0-9]"}, []),
        ({"block_name_pattern": "[A-Z]+"}, ["BLOCK_NAME_PATTERN"]),
        ({"max_object_count": 7}, []),
        ({"max_object_count": 6}, ["OBJECT_COUNT_EXCEEDED"]),
    ],
)
def test_each_convention_flags_only_what_breaks_it(blocks_model: Path, rules: dict, expected: list[str]) -> None:
    assert codes(validate(blocks_model, rules=rules)) == expected


def test_required_user_text_checks_presence_and_value(blocks_model: Path) -> None:
    report = validate(blocks_model, rules={"required_user_text": {"Phase": "[0-9]"}})
    missing = [f for f in report["findings"] if f["code"] == "USER_TEXT_MISSING"]
    assert len(missing) == 5  # six placed objects, the wall has Phase=2; the block member is not placed
    strict = validate(blocks_model, rules={"required_user_text": {"Phase": "[3-9]"}})
    wrong = [f for f in strict["findings"] if f["code"] == "USER_TEXT_PATTERN"]
    assert len(wrong) == 1 and wrong[0]["details"]["value"] == "2"


def test_severity_overrides_change_the_verdict(tmp_path: Path) -> None:
    b = ModelBuilder()
    b.model.Objects.AddBrep(box_brep(0, 0, 0, 10), b.attrs("wall one", "LIB::Z01::SOLID"))
    path = b.write(tmp_path / "named.3dm")
    assert not validate(path)["summary"]["passed"]
    as_warning = validate(path, rules={"severity": {"NAME_PATTERN": "warning"}})
    assert as_warning["summary"]["passed"] and as_warning["summary"]["counts"]["warning"] == 1
    assert as_warning["findings"][0]["severity"] == "warning"
    off = validate(path, rules={"severity": {"NAME_PATTERN": "off"}})
    assert off["findings"] == [] and off["summary"]["counts"] == {"error": 0, "warning": 0, "info": 0}


def test_the_report_names_its_ruleset(blocks_model: Path) -> None:
    from app.validation import build_ruleset

    ruleset = build_ruleset("team-sf", {"name_pattern": "SF-.*"}, version=3)
    report = validate(blocks_model, ruleset=ruleset, file_name="Façade – plan 01 (ü).3dm")
    assert report["ruleset"] == {"name": "team-sf", "version": 3, "sha256": ruleset.sha256}
    assert report["rules"]["name_pattern"] == "SF-.*"
    assert report["metadata"]["file_name"] == "Façade – plan 01 (ü).3dm"
    anonymous = validate(blocks_model)["ruleset"]
    assert anonymous["name"] is None and len(anonymous["sha256"]) == 64


class _Raises:
    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"binding refused {name}")


class _Obj:
    def __init__(self, geometry: object, attributes: object) -> None:
        self.Geometry, self.Attributes = geometry, attributes


class _Model:
    def __init__(self, objects: list) -> None:
        self.Objects = objects
        self.DimStyles: list = []
        self.InstanceDefinitions: list = []


def test_a_check_that_raises_on_one_object_is_recorded_and_the_walk_goes_on() -> None:
    line = r3.LineCurve(r3.Point3d(0, 0, 0), r3.Point3d(1, 0, 0))
    attrs = r3.ObjectAttributes()
    model = _Model([_Obj(_Raises(), attrs), _Obj(line, attrs), _Obj(line, _Raises())])
    data = walk_objects(model, [], ValidationRules(), lambda *_: None, 0, 100)
    assert data.count == 3 and len(data.kinds) == len(data.names) == len(data.layers) == 3
    assert len(data.boxes) == 18
    assert [(i, check) for i, check, _, _ in data.errors] == [(0, "IsValid"), (2, "attributes")]
    assert data.no_box == {0, 2}
    assert data.boxes[6:12].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
