"""Finding codes, severities and the plain-dict finding builder.

Kept free of pydantic so the validation hot path imports nothing heavy; the
pydantic report models live in report.py.
"""

from __future__ import annotations

from typing import Any, Literal

SCHEMA_VERSION = "1.0"

Severity = Literal["error", "warning", "info"]
ERROR: Severity = "error"
WARNING: Severity = "warning"
INFO: Severity = "info"

# Stable finding codes with their default severity; a ruleset may override it per code
# (`severity`, applied when the report is assembled).
NAME_PATTERN = "NAME_PATTERN"
NAME_MISSING = "NAME_MISSING"
NAME_DUPLICATE = "NAME_DUPLICATE"
LAYER_NAME_PATTERN = "LAYER_NAME_PATTERN"
GEOMETRY_INVALID = "GEOMETRY_INVALID"
BREP_OPEN = "BREP_OPEN"
MESH_OPEN = "MESH_OPEN"
SUBD_OPEN = "SUBD_OPEN"
BBOX_DEGENERATE = "BBOX_DEGENERATE"
OBJECT_FAR_OUTSIDE = "OBJECT_FAR_OUTSIDE"
UNITS_UNSET = "UNITS_UNSET"
TOLERANCE_INVALID = "TOLERANCE_INVALID"
TOLERANCE_LARGE = "TOLERANCE_LARGE"
MODEL_EMPTY = "MODEL_EMPTY"
OBJECTS_UNREADABLE = "OBJECTS_UNREADABLE"
FINDINGS_TRUNCATED = "FINDINGS_TRUNCATED"
CHECK_ERROR = "CHECK_ERROR"
# team conventions (ruleset fields; off unless the ruleset sets them)
LAYER_MISSING = "LAYER_MISSING"
LAYER_NOT_ALLOWED = "LAYER_NOT_ALLOWED"
OBJECT_TYPE_NOT_ALLOWED = "OBJECT_TYPE_NOT_ALLOWED"
USER_TEXT_MISSING = "USER_TEXT_MISSING"
USER_TEXT_PATTERN = "USER_TEXT_PATTERN"
UNITS_MISMATCH = "UNITS_MISMATCH"
BLOCK_NAME_PATTERN = "BLOCK_NAME_PATTERN"
OBJECT_COUNT_EXCEEDED = "OBJECT_COUNT_EXCEEDED"
# hostile or broken models, and a report kept within its size caps
LAYER_CYCLE = "LAYER_CYCLE"
BLOCK_CYCLE = "BLOCK_CYCLE"
COORDINATE_OUT_OF_RANGE = "COORDINATE_OUT_OF_RANGE"
LAYERS_TRUNCATED = "LAYERS_TRUNCATED"
STRINGS_TRUNCATED = "STRINGS_TRUNCATED"
NAMES_TRUNCATED = "NAMES_TRUNCATED"
REPORT_TRUNCATED = "REPORT_TRUNCATED"

SEVERITY_BY_CODE: dict[str, Severity] = {
    NAME_PATTERN: ERROR,
    NAME_MISSING: WARNING,
    NAME_DUPLICATE: WARNING,
    LAYER_NAME_PATTERN: WARNING,
    GEOMETRY_INVALID: ERROR,
    BREP_OPEN: ERROR,
    MESH_OPEN: ERROR,
    SUBD_OPEN: ERROR,
    BBOX_DEGENERATE: WARNING,
    OBJECT_FAR_OUTSIDE: WARNING,
    UNITS_UNSET: ERROR,
    TOLERANCE_INVALID: ERROR,
    TOLERANCE_LARGE: WARNING,
    MODEL_EMPTY: ERROR,
    OBJECTS_UNREADABLE: ERROR,
    FINDINGS_TRUNCATED: INFO,
    CHECK_ERROR: WARNING,
    LAYER_MISSING: ERROR,
    LAYER_NOT_ALLOWED: WARNING,
    OBJECT_TYPE_NOT_ALLOWED: ERROR,
    USER_TEXT_MISSING: ERROR,
    USER_TEXT_PATTERN: ERROR,
    UNITS_MISMATCH: ERROR,
    BLOCK_NAME_PATTERN: WARNING,
    OBJECT_COUNT_EXCEEDED: ERROR,
    LAYER_CYCLE: ERROR,
    BLOCK_CYCLE: ERROR,
    COORDINATE_OUT_OF_RANGE: ERROR,
    LAYERS_TRUNCATED: INFO,
    STRINGS_TRUNCATED: INFO,
    NAMES_TRUNCATED: INFO,
    REPORT_TRUNCATED: INFO,
}
FINDING_CODES: tuple[str, ...] = tuple(SEVERITY_BY_CODE)


QUOTED_CHARS = 200  # characters of a model string quoted in a message (details keep up to max_message_chars)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters; a cut one ends with "…"."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def finding(code: str, message: str, object_id: str | None = None, **details: Any) -> dict[str, Any]:
    """A finding as a plain dict; severity comes from the code."""
    out: dict[str, Any] = {
        "code": code,
        "severity": SEVERITY_BY_CODE[code],
        "object_id": object_id,
        "message": message,
    }
    if details:
        out["details"] = details
    return out


# rhino3dm geometry class names (`type(obj.Geometry).__name__`), including the base classes a
# ruleset may name to allow a whole family (allowed_object_types = ["Curve"] allows every curve).
KNOWN_KINDS: tuple[str, ...] = (
    "AnnotationBase",
    "ArcCurve",
    "Brep",
    "Centermark",
    "Curve",
    "DimAngular",
    "DimLinear",
    "DimOrdinate",
    "DimRadial",
    "Dimension",
    "Extrusion",
    "GeometryBase",
    "Hatch",
    "InstanceReference",
    "Leader",
    "Light",
    "LineCurve",
    "Mesh",
    "NurbsCurve",
    "NurbsSurface",
    "PlaneSurface",
    "Point",
    "PointCloud",
    "PointGrid",
    "PolyCurve",
    "PolylineCurve",
    "RevSurface",
    "SubD",
    "Surface",
    "Text",
    "TextDot",
)
