"""Units and tolerances (UNITS_UNSET, TOLERANCE_INVALID, TOLERANCE_LARGE).

An absolute tolerance is invalid when it is not a finite number > 0, exceeds COORDINATE_LIMIT
model units, or, for a unit system of known length, exceeds MAX_TOLERANCE_M metres; the geometry
checks then use a tiny default instead. Tolerances that are not finite are null in the report
(metadata.read_settings), so no inf or NaN reaches it.
"""

from __future__ import annotations

from typing import Any

from .codes import TOLERANCE_INVALID, TOLERANCE_LARGE, UNITS_UNSET, finding
from .geometry import COORDINATE_LIMIT
from .rules import ValidationRules

Pending = tuple[int | None, dict[str, Any]]

METRES_PER_UNIT: dict[str, float] = {
    "Angstroms": 1e-10,
    "Nanometers": 1e-9,
    "Microns": 1e-6,
    "Millimeters": 1e-3,
    "Centimeters": 1e-2,
    "Decimeters": 1e-1,
    "Meters": 1.0,
    "Dekameters": 10.0,
    "Hectometers": 100.0,
    "Kilometers": 1e3,
    "Megameters": 1e6,
    "Gigameters": 1e9,
    "Microinches": 2.54e-8,
    "Mils": 2.54e-5,
    "Inches": 0.0254,
    "Feet": 0.3048,
    "Yards": 0.9144,
    "Miles": 1609.344,
    "PrinterPoints": 0.0254 / 72,
    "PrinterPicas": 0.0254 / 6,
    "NauticalMiles": 1852.0,
    "AstronomicalUnits": 1.495978707e11,
    "LightYears": 9.4607304725808e15,
    "Parsecs": 3.0856775814913673e16,
}
MAX_TOLERANCE_M = 1e6  # an absolute tolerance above this many metres is not a tolerance


def check_settings(settings: dict[str, Any], rules: ValidationRules) -> list[Pending]:
    out: list[Pending] = []
    unit = settings["unit_system"]
    if unit in ("None", "Unset"):
        out.append(
            (None, finding(UNITS_UNSET, f"model unit system is {unit}; dimensions are meaningless", unit_system=unit))
        )
    tol = settings["tolerances"]
    absolute, angle, relative = tol["absolute"], tol["angle_degrees"], tol["relative"]
    metres = absolute * METRES_PER_UNIT[unit] if absolute is not None and unit in METRES_PER_UNIT else None
    problem = _absolute_problem(absolute, unit, metres)
    if problem:
        out.append((None, finding(TOLERANCE_INVALID, problem, tolerance="absolute", value=absolute)))
    elif metres is not None and metres > rules.max_absolute_tolerance_m:
        out.append(
            (
                None,
                finding(
                    TOLERANCE_LARGE,
                    f"absolute tolerance {absolute} {unit} ({metres:g} m) exceeds {rules.max_absolute_tolerance_m:g} m",
                    tolerance="absolute",
                    value=absolute,
                    metres=metres,
                    limit_m=rules.max_absolute_tolerance_m,
                ),
            )
        )
    if angle is None or not 0 < angle <= 90:
        out.append(
            (
                None,
                finding(
                    TOLERANCE_INVALID,
                    f"angle tolerance must be in (0, 90] degrees (is {_shown(angle)})",
                    tolerance="angle_degrees",
                    value=angle,
                ),
            )
        )
    if relative is None or not 0 <= relative < 1:
        out.append(
            (
                None,
                finding(
                    TOLERANCE_INVALID,
                    f"relative tolerance must be in [0, 1) (is {_shown(relative)})",
                    tolerance="relative",
                    value=relative,
                ),
            )
        )
    return out


def _absolute_problem(absolute: float | None, unit: str, metres: float | None) -> str | None:
    if absolute is None:
        return "absolute tolerance is not a finite number"
    if absolute <= 0:
        return f"absolute tolerance must be > 0 (is {absolute})"
    if absolute > COORDINATE_LIMIT:
        return f"absolute tolerance {absolute:g} exceeds {COORDINATE_LIMIT:g} model units"
    if metres is not None and metres > MAX_TOLERANCE_M:
        return f"absolute tolerance {absolute:g} {unit} ({metres:g} m) exceeds {MAX_TOLERANCE_M:g} m"
    return None


def usable_tolerance(settings: dict[str, Any]) -> float | None:
    """The absolute tolerance when the checks can use it (else TOLERANCE_INVALID says why)."""
    absolute = settings["tolerances"]["absolute"]
    return absolute if absolute is not None and 0 < absolute <= COORDINATE_LIMIT else None


def _shown(value: float | None) -> str:
    return "not a finite number" if value is None else f"{value:g}"
