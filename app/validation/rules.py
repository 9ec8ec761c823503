"""Configurable validation rules.

`ValidationRules` carries every threshold and pattern the checks use. Callers
override fields with `ValidationRules(...)`, `rules.replace(...)` or by passing
a plain mapping to `validate_path(rules={...})`; see docs/validation.md.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
DEFAULT_LAYER_EXPECTED = "'Default' or an uppercase letter/digit followed by letters, digits, space, _ or - (max 64), e.g. WALLS"


@dataclass(frozen=True)
class ValidationRules:
    """Thresholds and patterns for one validation run (all have defaults)."""

    name_pattern: str = DEFAULT_NAME_PATTERN
    name_expected: str = DEFAULT_NAME_EXPECTED
    layer_pattern: str = DEFAULT_LAYER_PATTERN
    layer_expected: str = DEFAULT_LAYER_EXPECTED
    unique_names: bool = True
    # A Brep/Extrusion/Mesh/SubD on a layer whose full path matches this
    # (re.search) must be closed.
    solid_layer_pattern: str = r"(?i)solid"
    # Breps with >= 2 faces and extrusions with >= 1 cap must be closed
    # wherever they are.
    polysurfaces_must_be_closed: bool = True
    # OBJECT_FAR_OUTSIDE: distance of an object's bbox centre from the median
    # centre > factor * max(median distance, median half-diagonal, abs tol).
    far_outside_factor: float = 10.0
    far_outside_min_objects: int = 5
    # TOLERANCE_LARGE: absolute tolerance larger than this, in metres.
    max_absolute_tolerance_m: float = 0.01
    # Report size caps (summary counts still include everything).
    max_findings_per_code: int = 500
    max_listed_names: int = 1000
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("name_pattern", "layer_pattern", "solid_layer_pattern"):
            try:
                self._compiled[key] = re.compile(getattr(self, key))
            except re.error as exc:
                raise ValueError(f"invalid regular expression for {key}: {exc}") from exc
        if self.far_outside_factor <= 0:
            raise ValueError("far_outside_factor must be > 0")
        if self.max_findings_per_code < 1:
            raise ValueError("max_findings_per_code must be >= 1")

    @property
    def name_re(self) -> re.Pattern[str]:
        return self._compiled["name_pattern"]

    @property
    def layer_re(self) -> re.Pattern[str]:
        return self._compiled["layer_pattern"]

    @property
    def solid_layer_re(self) -> re.Pattern[str]:
        return self._compiled["solid_layer_pattern"]

    def replace(self, **changes: Any) -> ValidationRules:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


def coerce_rules(rules: ValidationRules | Mapping[str, Any] | None) -> ValidationRules:
    """Accept None (defaults), a ValidationRules, or a mapping of overrides."""
    if rules is None:
        return ValidationRules()
    if isinstance(rules, ValidationRules):
        return rules
    known = {f.name for f in dataclasses.fields(ValidationRules) if f.init}
    unknown = sorted(set(rules) - known)
    if unknown:
        raise ValueError(f"unknown validation rule(s): {', '.join(unknown)}")
    return ValidationRules(**dict(rules))
