"""Naming: object names follow PROJECT-ZONE-TYPE-NNN, layers a simpler rule; every violation is traceable."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from app.validation import ValidationRules
from app.validation.codes import LAYER_NAME_PATTERN, NAME_DUPLICATE, NAME_MISSING, NAME_PATTERN
from tests.validation.reports import validate

RULES = ValidationRules()


@pytest.mark.parametrize("name", ["LIB-Z01-WALL-001", "AB-Z99-COLUMN-999", "PROJ1234-Z00-AB-000", "L1B-Z05-SLAB-120"])
def test_default_scheme_accepts(name: str) -> None:
    assert RULES.name_re.fullmatch(name)


@pytest.mark.parametrize(
    "name",
    [
        "lib-Z01-WALL-001",  # project must be uppercase
        "L-Z01-WALL-001",  # project too short
        "PROJECT12-Z01-WALL-001",  # project too long
        "LIB-Z1-WALL-001",  # zone needs two digits
        "LIB-A01-WALL-001",  # zone starts with Z
        "LIB-Z01-W-001",  # type too short
        "LIB-Z01-WALL1-001",  # type is letters only
        "LIB-Z01-WALL-01",  # sequence has three digits
        "LIB_Z01_WALL_001",  # hyphens
        "LIB-Z01-WALL-001 ",  # no trailing space
        "",
    ],
)
def test_default_scheme_rejects(name: str) -> None:
    assert RULES.name_re.fullmatch(name) is None


@pytest.mark.parametrize("name", ["Default", "WALLS", "Z01", "Layer 01", "LIB_A-1"])
def test_layer_rule_accepts(name: str) -> None:
    assert RULES.layer_re.fullmatch(name)


@pytest.mark.parametrize("name", ["temp layer", "_hidden", "-x", "", "A" * 65])
def test_layer_rule_rejects(name: str) -> None:
    assert RULES.layer_re.fullmatch(name) is None


def _by_code(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for item in report["findings"]:
        out.setdefault(item["code"], []).append(item)
    return out


def test_bad_names_fixture_reports_each_violation(models: dict[str, Path]) -> None:
    report = validate(models["bad_names"])
    found = _by_code(report)
    assert report["summary"]["passed"] is False
    assert sorted(f["details"]["name"] for f in found[NAME_PATTERN]) == ["LIB-Z1-WALL-001", "wall 1"]
    assert [f["details"]["name"] for f in found[NAME_MISSING]] == [""]
    assert [f["details"]["name"] for f in found[NAME_DUPLICATE]] == ["LIB-Z01-WALL-002"] * 2
    assert [f["details"]["name"] for f in found[LAYER_NAME_PATTERN]] == ["temp layer"]


def test_object_violations_carry_object_id_name_and_expected_form(models: dict[str, Path]) -> None:
    found = _by_code(validate(models["bad_names"]))
    object_findings = found[NAME_PATTERN] + found[NAME_MISSING] + found[NAME_DUPLICATE]
    for item in object_findings:
        uuid.UUID(item["object_id"])
        assert "name" in item["details"]
        assert item["details"]["expected"] == RULES.name_expected
    assert len({f["object_id"] for f in found[NAME_DUPLICATE]}) == 2


def test_severities(models: dict[str, Path]) -> None:
    found = _by_code(validate(models["bad_names"]))
    assert {code: {f["severity"] for f in items} for code, items in found.items()} == {
        NAME_PATTERN: {"error"},
        NAME_MISSING: {"warning"},
        NAME_DUPLICATE: {"warning"},
        LAYER_NAME_PATTERN: {"warning"},
    }


def test_layer_violation_points_at_the_layer(models: dict[str, Path]) -> None:
    (item,) = _by_code(validate(models["bad_names"]))[LAYER_NAME_PATTERN]
    assert item["object_id"] is None
    assert item["details"]["full_path"] == "LIB::Z01::temp layer"
    uuid.UUID(item["details"]["layer_id"])


def test_valid_names_produce_no_naming_findings(models: dict[str, Path]) -> None:
    assert validate(models["valid_part"])["findings"] == []


def test_rules_can_be_overridden(models: dict[str, Path]) -> None:
    report = validate(models["bad_names"], rules={"name_pattern": r".+", "unique_names": False, "layer_pattern": r".*"})
    assert [f["code"] for f in report["findings"]] == [NAME_MISSING]
    assert report["summary"]["passed"] is True
    assert report["rules"]["name_pattern"] == ".+"


def test_custom_scheme_with_dataclass_rules(models: dict[str, Path]) -> None:
    rules = ValidationRules().replace(name_pattern=r"[a-z]+ \d", name_expected="word digit")
    found = _by_code(validate(models["bad_names"], rules=rules))
    assert "wall 1" not in {f["details"]["name"] for f in found[NAME_PATTERN]}
    assert {f["details"]["expected"] for f in found[NAME_PATTERN]} == {"word digit"}


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="name_pattern"):
        ValidationRules(name_pattern="(")
    with pytest.raises(ValueError, match="nmae_pattern: unknown rule"):
        validate("unused.3dm", rules={"nmae_pattern": "x"})
