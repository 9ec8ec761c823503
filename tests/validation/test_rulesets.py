"""Rulesets as files: loading, refusing bad ones with the field named, and their identity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.validation import RulesetError, ValidationRules, build_ruleset, load_dir, load_file

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_default_ruleset_holds_the_built_in_defaults() -> None:
    default = load_dir(ROOT / "rulesets")["default"]
    assert default.rules == ValidationRules()
    assert default.sha256 == build_ruleset("default", {"description": default.description}).sha256


def test_the_same_rules_hash_the_same_from_toml_or_json(tmp_path: Path) -> None:
    (tmp_path / "team.toml").write_text('required_layers = ["A::B"]\nseverity = { NAME_MISSING = "off" }\n')
    from_toml = load_file(tmp_path / "team.toml")
    from_json = build_ruleset("team", {"severity": {"NAME_MISSING": "off"}, "required_layers": ["A::B"]})
    assert from_toml.sha256 == from_json.sha256
    assert from_toml.sha256 != build_ruleset("team", {"required_layers": ["A::C"]}).sha256


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("name_pattern = '('", "name_pattern"),
        ("nmae_pattern = 'x'", "nmae_pattern"),
        ("max_object_count = 'many'", "max_object_count"),
        ("required_units = 'Furlongs'", "required_units"),
        ("allowed_object_types = ['Brep', 'Blob']", "allowed_object_types"),
        ("severity = { NOT_A_CODE = 'off' }", "severity"),
        ("severity = { NAME_MISSING = 'fatal' }", "severity"),
        ("required_user_text = { Phase = '[' }", "required_user_text"),
        ("unique_names = 'yes'", "unique_names"),
        ("description = 3", "description"),
    ],
)
def test_a_bad_file_is_refused_with_the_file_and_field_named(tmp_path: Path, toml: str, field: str) -> None:
    path = tmp_path / "team.toml"
    path.write_text(toml + "\n")
    with pytest.raises(RulesetError) as caught:
        load_file(path)
    assert caught.value.field == field
    assert str(path) in str(caught.value) and field in str(caught.value)


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text("name_pattern = \n")
    with pytest.raises(RulesetError, match=r"broken\.toml: not valid TOML"):
        load_dir(tmp_path)


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 65, "team sf"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(RulesetError) as caught:
        build_ruleset(name, {})
    assert caught.value.field == "name"


def test_the_examples_in_the_docs_are_valid_rulesets(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "rulesets.md").read_text(encoding="utf-8")
    examples = re.findall(r"```toml\n(.*?)```", doc, flags=re.DOTALL)
    assert len(examples) >= 2
    for k, text in enumerate(examples):
        (tmp_path / f"example{k}.toml").write_text(text, encoding="utf-8")
        assert load_file(tmp_path / f"example{k}.toml").description
