"""Geometry checks: validity, closed solids, bounding boxes, outliers, units.

How the checks decide (see docs/checks.md):

* GEOMETRY_INVALID: `IsValid` is false. Invalid objects get no other geometry
  check and are left out of the outlier statistics.
* A closed solid is expected for a Brep, Extrusion, Mesh or SubD on a layer
  whose full path matches `rules.solid_layer_pattern` (default: contains
  "solid", any case), and, with `rules.polysurfaces_must_be_closed`, for every
  Brep with two or more faces and every Extrusion with at least one cap.
  Single-face Breps, uncapped Extrusions and Meshes/SubDs elsewhere may be open.
* COORDINATE_OUT_OF_RANGE: a box coordinate is not finite or its absolute value
  exceeds COORDINATE_LIMIT (1e15 model units: there doubles are 0.125 apart, so
  no modelling tolerance holds; every sum, difference and hypot of in-range
  values stays finite). Such boxes are left out of every statistic.
* BBOX_DEGENERATE: the box has min > max, or (except for point-like
  objects) all its extents are <= the absolute tolerance; for objects expected
  to be solid and not already reported open, any extent <= tolerance (flat)
  also counts.
* OBJECT_FAR_OUTSIDE (needs >= far_outside_min_objects valid boxes): let m be
  the per-axis median of box centres, d_i the distance of centre i from m,
  R = median(d_i), h = median box half-diagonal. Object i is flagged when
  d_i > far_outside_factor * max(R, h, absolute tolerance).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from statistics import median
from typing import TYPE_CHECKING, Any

from .codes import (
    BBOX_DEGENERATE,
    BREP_OPEN,
    COORDINATE_OUT_OF_RANGE,
    GEOMETRY_INVALID,
    MESH_OPEN,
    OBJECT_FAR_OUTSIDE,
    SUBD_OPEN,
    finding,
)
from .rules import ValidationRules

if TYPE_CHECKING:
    from .walk import ObjectData

Pending = tuple[int | None, dict[str, Any]]  # (object index or None, finding)

SOLID_KINDS = frozenset({"Brep", "Extrusion", "Mesh", "SubD"})
POINT_KINDS = frozenset({"Point", "PointCloud", "TextDot", "Light"})
# No zero-size check: rhino3dm gives text no glyph width, and a detail's box is its frame.
NO_EXTENT_KINDS = POINT_KINDS | {"Text", "Leader", "Centermark", "GeometryBase"}
COORDINATE_LIMIT = 1e15  # model units
_OPEN_CODE = {"Brep": BREP_OPEN, "Extrusion": BREP_OPEN, "Mesh": MESH_OPEN, "SubD": SUBD_OPEN}


def solid_layer_flags(layer_paths: list[str], rules: ValidationRules) -> list[bool]:
    """For each layer index: must objects on it be closed solids?"""
    return [bool(rules.solid_layer_re.search(path)) for path in layer_paths]


def solid_state(geo: Any, kind: str, on_solid_layer: bool, rules: ValidationRules) -> tuple[str | None, str | None]:
    """(why a solid is expected or None, finding code if it is open or None)."""
    reason = "solid layer" if on_solid_layer else None
    if reason is None and rules.polysurfaces_must_be_closed:
        if kind == "Brep" and len(geo.Faces) >= 2:
            reason = "polysurface"
        elif kind == "Extrusion" and geo.CapCount >= 1:
            reason = "capped extrusion"
    if reason is None:
        return None, None
    closed = geo.IsClosed if kind == "Mesh" else geo.IsSolid
    return reason, None if closed else _OPEN_CODE[kind]


class BoxColumns:
    """The walk's flat box array split into six columns, plus which boxes are usable
    (within +-COORDINATE_LIMIT, hence finite, and min <= max on every axis)."""

    def __init__(self, boxes: array[float], exclude: set[int] | frozenset[int] = frozenset()) -> None:
        """`exclude`: boxes left out of the model's statistics (block members, unknown boxes)."""
        self.cols: tuple[array[float], ...] = tuple(boxes[k::6] for k in range(6))
        lo, hi = -COORDINATE_LIMIT, COORDINATE_LIMIT
        ok = [
            lo <= a <= d <= hi and lo <= b <= e <= hi and lo <= c <= f <= hi
            for a, b, c, d, e, f in zip(*self.cols, strict=True)
        ]
        self.finite = ok
        if exclude:
            ok = [good and i not in exclude for i, good in enumerate(ok)]
        self.all_usable = all(ok)
        # a range when every box is usable (the common case) costs no memory
        self.usable: Sequence[int] = range(len(ok)) if self.all_usable else [i for i, good in enumerate(ok) if good]

    def column(self, k: int) -> Sequence[float]:
        """Column k restricted to usable boxes."""
        col = self.cols[k]
        return col if self.all_usable else array("d", (col[i] for i in self.usable))

    def box(self, i: int) -> tuple[float, ...]:
        return tuple(col[i] for col in self.cols)


def check_objects(data: ObjectData, boxes: BoxColumns, tol: float) -> list[Pending]:
    """Invalid geometry, open solids and degenerate boxes."""
    kinds = data.kinds
    out: list[Pending] = [
        (i, finding(GEOMETRY_INVALID, f"{kinds[i]} geometry is not valid (IsValid is false)", kind=kinds[i]))
        for i in data.invalid
    ]
    for i, code, reason in data.open_solids:
        out.append(
            (
                i,
                finding(
                    code,
                    f"{kinds[i]} is open but a closed solid is expected ({reason})",
                    kind=kinds[i],
                    expected_because=reason,
                ),
            )
        )
    skip = set(data.invalid) | data.no_box
    flat_matters = data.solid_expected - {i for i, _, _ in data.open_solids}  # "flat" only for closed ones
    finite = boxes.finite
    for i, (a, b, c, d, e, f) in enumerate(zip(*boxes.cols, strict=True)):
        if i in skip:
            continue
        if not finite[i]:
            box = boxes.box(i)
            bad = [v for v in box if not -COORDINATE_LIMIT <= v <= COORDINATE_LIMIT]  # NaN included
            if bad:
                out.append((i, _out_of_range(kinds[i], box, bad)))
                continue
            problem: str | None = "invalid (min > max)"
        elif kinds[i] in NO_EXTENT_KINDS:
            continue
        else:
            problem = _degenerate(d - a, e - b, f - c, tol, i in flat_matters)
        if problem:
            out.append(
                (
                    i,
                    finding(
                        BBOX_DEGENERATE,
                        f"{kinds[i]} bounding box is {problem}",
                        kind=kinds[i],
                        problem=problem,
                        box=_box_json(boxes.box(i)),
                    ),
                )
            )
    return out


def _out_of_range(kind: str, box: tuple[float, ...], bad: list[float]) -> dict[str, Any]:
    values = list(dict.fromkeys(map(repr, bad)))  # a point's min and max are the same values
    return finding(
        COORDINATE_OUT_OF_RANGE,
        f"{kind} has coordinates beyond +-{COORDINATE_LIMIT:g} model units or not finite ({', '.join(values[:3])})",
        kind=kind,
        values=values,
        limit=COORDINATE_LIMIT,
        box=_box_json(box),
    )


def _degenerate(dx: float, dy: float, dz: float, tol: float, solid: bool) -> str | None:
    if dx <= tol and dy <= tol and dz <= tol:
        return f"zero-size (all extents <= tolerance {tol:g})"
    if solid and (dx <= tol or dy <= tol or dz <= tol):
        return f"flat (an extent <= tolerance {tol:g}) for an object expected to be solid"
    return None


def check_far_outside(data: ObjectData, boxes: BoxColumns, tol: float, rules: ValidationRules) -> list[Pending]:
    if len(boxes.usable) < max(rules.far_outside_min_objects, 2):
        return []
    x0, y0, z0, x1, y1, z1 = (boxes.column(k) for k in range(6))
    # arrays filled from generators, not lists: 8 bytes per value instead of 32, and no transient
    # list while the model is still in memory (peak RSS)
    # boxes are within +-COORDINATE_LIMIT: no sum, difference or hypot below can overflow
    cx = array("d", (a * 0.5 + b * 0.5 for a, b in zip(x0, x1, strict=True)))
    cy = array("d", (a * 0.5 + b * 0.5 for a, b in zip(y0, y1, strict=True)))
    cz = array("d", (a * 0.5 + b * 0.5 for a, b in zip(z0, z1, strict=True)))
    mx, my, mz = median(cx), median(cy), median(cz)
    dists = array("d", (math.hypot(x - mx, y - my, z - mz) for x, y, z in zip(cx, cy, cz, strict=True)))
    half = median(
        array(
            "d",
            (math.hypot(b - a, d - c, f - e) * 0.5 for a, b, c, d, e, f in zip(x0, x1, y0, y1, z0, z1, strict=True)),
        )
    )
    scale = max(median(dists), half, tol)
    limit = rules.far_outside_factor * scale
    out: list[Pending] = []
    for j, dist in enumerate(dists):
        if dist > limit:
            i = boxes.usable[j]
            out.append(
                (
                    i,
                    finding(
                        OBJECT_FAR_OUTSIDE,
                        f"{data.kinds[i]} lies {dist:g} from the model's median centre (limit {limit:g})",
                        distance=dist,
                        limit=limit,
                        centre=[cx[j], cy[j], cz[j]],
                        median_centre=[mx, my, mz],
                    ),
                )
            )
    return out


def _box_json(box: tuple[float, ...]) -> dict[str, list[float | None]]:
    clean = [v if -COORDINATE_LIMIT <= v <= COORDINATE_LIMIT else None for v in box]
    return {"min": clean[:3], "max": clean[3:]}
