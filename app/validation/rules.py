"""Configurable validation rules.

`ValidationRules` carries every threshold, pattern and team convention the checks use. Callers
override fields with `ValidationRules(...)`, `rules.replace(...)` or a plain mapping
(`coerce_rules({...})`, `validate_path(rules={...})`); a ruleset file or `PUT /api/v1/rulesets/..`
is such a mapping. Every field and its meaning: docs/rulesets.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codes import KNOWN_KINDS, SEVERITY_BY_CODE

# PROJECT-ZONE-TYPE-NNN, e.g. LIB-Z01-WALL-001:
#   PROJECT  2-8 uppercase letters/digits
#   ZONE     "Z" followed by exactly 2 digits
#   TYPE     2-12 uppercase letters
#   NNN      exactly 3 digits
DEFAULT_NAME_PATTERN = r"(?P<project>[A-Z0-9]{2,8})-(?P<zone>Z[0-9]{2})-(?P<type>[A-Z]{2,12})-(?P<seq>[0-9]{3})"
DEFAULT_NAME_EXPECTED = "PROJECT-ZONE-TYPE-NNN, e.g. LIB-Z01-WALL-001"

# Layer names (one path segment, not the full path): Rhino's "Default", or
# 1-64 characters starting with an uppercase letter or digit, then letters,
# digits, space, "_" or "-".
DEFAULT_LAYER_PATTERN = r"Default|[A-Z0-9][A-Za-z0-9 _-]{0,63}"
DEFAULT_LAYER_EXPECTED = (
    "'Default' or an uppercase letter/digit followed by letters, digits, space, _ or - (max 64), e.g. WALLS"
)

SEVERITY_CHOICES = ("error", "warning", "info", "off")
# Lower bounds of the report caps (a report cut down to its summary and scalar metadata fits in 10,000 bytes).
_LEAST = {
    "max_findings_per_code": 1,
    "max_listed_names": 0,
    "max_listed_layers": 0,
    "max_listed_strings": 0,
    "max_message_chars": 40,
    "max_report_bytes": 10_000,
}
# rhino3dm's UnitSystem names a model can declare (required_units)
UNIT_NAMES = (
    "Angstroms",
    "Nanometers",
    "Microns",
    "Millimeters",
    "Centimeters",
    "Decimeters",
    "Meters",
    "Dekameters",
    "Hectometers",
    "Kilometers",
    "Megameters",
    "Gigameters",
    "Microinches",
    "Mils",
    "Inches",
    "Feet",
    "Yards",
    "Miles",
    "PrinterPoints",
    "PrinterPicas",
    "NauticalMiles",
    "AstronomicalUnits",
    "LightYears",
    "Parsecs",
    "CustomUnits",
)


class RulesError(ValueError):
    """A rule value that cannot be used; `.field` names the rule."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class ValidationRules:
    """Thresholds, patterns and conventions for one validation run (all have defaults)."""

    name_pattern: str = DEFAULT_NAME_PATTERN
    name_expected: str = DEFAULT_NAME_EXPECTED
    layer_pattern: str = DEFAULT_LAYER_PATTERN
    layer_expected: str = DEFAULT_LAYER_EXPECTED
    unique_names: bool = True
    # A Brep/Extrusion/Mesh/SubD on a layer whose full path matches this (re.search) must be closed.
    solid_layer_pattern: str = r"(?i)solid"
    # Breps with >= 2 faces and extrusions with >= 1 cap must be closed wherever they are.
    polysurfaces_must_be_closed: bool = True
    # OBJECT_FAR_OUTSIDE: distance of an object's bbox centre from the median
    # centre > factor * max(median distance, median half-diagonal, abs tol).
    far_outside_factor: float = 10.0
    far_outside_min_objects: int = 5
    # TOLERANCE_LARGE: absolute tolerance larger than this, in metres.
    max_absolute_tolerance_m: float = 0.01
    # Team conventions; an empty value switches the rule off.
    required_layers: tuple[str, ...] = ()  # full paths ("Parent::Child") that must exist
    allowed_layer_names: tuple[str, ...] = ()  # every layer's own name must be one of these
    allowed_object_types: tuple[str, ...] = ()  # rhino3dm class names, e.g. "Brep", "Extrusion"
    required_user_text: Mapping[str, str] = field(default_factory=dict)  # key -> value pattern (fullmatch)
    required_units: str | None = None  # e.g. "Millimeters"
    block_name_pattern: str | None = None  # block (instance definition) names, fullmatch
    max_object_count: int | None = None
    severity: Mapping[str, str] = field(default_factory=dict)  # finding code -> error|warning|info|off
    # Report size caps (summary and metadata counts still include everything).
    max_findings_per_code: int = 500
    max_listed_names: int = 1000
    max_listed_layers: int = 1000
    max_listed_strings: int = 1000
    max_message_chars: int = 500  # finding messages and every string taken from the model
    max_report_bytes: int = 5_000_000  # len(json.dumps(report)) never exceeds this
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("name_pattern", "layer_pattern", "solid_layer_pattern", "block_name_pattern"):
            if getattr(self, key) is not None:
                self._compiled[key] = _compile(key, getattr(self, key))
        for key, pattern in self.required_user_text.items():
            self._compiled[f"user_text:{key}"] = _compile("required_user_text", pattern, key)
        if not self.far_outside_factor > 0:
            raise RulesError("far_outside_factor", "must be > 0")
        for key, least in _LEAST.items():
            if getattr(self, key) < least:
                raise RulesError(key, f"must be >= {least}")
        if self.max_object_count is not None and self.max_object_count < 0:
            raise RulesError("max_object_count", "must be >= 0")
        if self.required_units is not None and self.required_units not in UNIT_NAMES:
            raise RulesError("required_units", f"unknown unit {self.required_units!r}; one of {', '.join(UNIT_NAMES)}")
        unknown_kinds = [kind for kind in self.allowed_object_types if kind not in KNOWN_KINDS]
        if unknown_kinds:
            raise RulesError(
                "allowed_object_types",
                f"unknown type(s) {', '.join(map(repr, unknown_kinds))}; known: {', '.join(KNOWN_KINDS)}",
            )
        for code, level in self.severity.items():
            if code not in SEVERITY_BY_CODE:
                raise RulesError("severity", f"unknown finding code {code!r}")
            if level not in SEVERITY_CHOICES:
                raise RulesError("severity", f"{code}: {level!r} is not one of {', '.join(SEVERITY_CHOICES)}")

    @property
    def name_re(self) -> re.Pattern[str]:
        return self._compiled["name_pattern"]

    @property
    def layer_re(self) -> re.Pattern[str]:
        return self._compiled["layer_pattern"]

    @property
    def solid_layer_re(self) -> re.Pattern[str]:
        return self._compiled["solid_layer_pattern"]

    @property
    def block_name_re(self) -> re.Pattern[str] | None:
        return self._compiled.get("block_name_pattern")

    def user_text_re(self, key: str) -> re.Pattern[str]:
        return self._compiled[f"user_text:{key}"]

    def replace(self, **changes: Any) -> ValidationRules:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Every rule, JSON-safe (tuples as lists, mappings as dicts)."""
        return {name: _plain(getattr(self, name)) for name in RULE_FIELDS}


def _compile(key: str, pattern: str, label: str | None = None) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        where = f" (key {label!r})" if label else ""
        raise RulesError(key, f"invalid regular expression{where}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


RULE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ValidationRules) if f.init)
_KIND = {  # field -> expected JSON/TOML shape
    f.name: {
        "str": "str",
        "bool": "bool",
        "float": "float",
        "int": "int",
        "str | None": "str?",
        "int | None": "int?",
        "tuple[str, ...]": "list",
        "Mapping[str, str]": "map",
    }[str(f.type)]
    for f in dataclasses.fields(ValidationRules)
    if f.init
}


def coerce_rules(rules: ValidationRules | Mapping[str, Any] | None) -> ValidationRules:
    """Accept None (defaults), a ValidationRules, or a mapping of overrides (as parsed from JSON
    or TOML). Raises RulesError naming the first field that is unknown or of the wrong type."""
    if rules is None:
        return DEFAULT_RULES
    if isinstance(rules, ValidationRules):
        return rules
    values = {key: _coerce(key, value) for key, value in rules.items()}
    return ValidationRules(**values)


def _coerce(key: str, value: Any) -> Any:
    kind = _KIND.get(key)
    if kind is None:
        raise RulesError(key, "unknown rule")
    if kind.endswith("?") and value is None:
        return None
    kind = kind.rstrip("?")
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        "list": isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
        "map": isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()),
    }[kind]
    if not ok:
        wanted = {
            "str": "a string",
            "bool": "true or false",
            "int": "an integer",
            "float": "a finite number",
            "list": "a list of strings",
            "map": "a table of string keys to string values",
        }[kind]
        raise RulesError(key, f"must be {wanted}")
    if kind == "float":
        return float(value)
    if kind == "list":
        return tuple(value)
    if kind == "map":
        return dict(value)
    return value


DEFAULT_RULES = ValidationRules()  # patterns compiled once per process, at import
