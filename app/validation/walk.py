"""The single pass over the object table.

Everything the metadata, nomenclature and geometry checks need is collected
here in one walk, into flat lists of plain Python values. This is the hot
path, so it is deliberately plain:

* each File3dmObject is fetched once (rhino3dm builds new wrappers on every
  table access and never frees them, so a second walk costs time *and* memory);
* the bounding box is taken with one `Encode()` call (one dict) rather than
  Min/Max/X/Y/Z property calls (eight pybind calls); a Point's box is its
  `Location.Encode()` (about a third cheaper than GetBoundingBox().Encode());
* boxes go into one flat array('d') (48 bytes per object), not tuples;
* LayerIndex is only read for Brep/Extrusion/Mesh/SubD (solid-layer rule);
* the object kind is the Python class name (`type(geo)`), not `ObjectType`;
* `Attributes.Id` (a uuid.UUID built from a string) is not read here: the
  engine fetches ids only for objects that have findings;
* closedness (IsSolid/IsClosed) is only computed where a solid is expected.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import rhino3dm

from .geometry import SOLID_KINDS, solid_state
from .rules import ValidationRules

Tick = Callable[[int, str], None]
NAN_BOX = (math.nan,) * 6


@dataclass
class ObjectData:
    """Per-object columns, indexed like the object table."""

    count: int = 0
    kinds: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    # 6 doubles per object: minx, miny, minz, maxx, maxy, maxz; NaN for invalid geometry
    boxes: array = field(default_factory=lambda: array("d"))
    invalid: list[int] = field(default_factory=list)
    solid_expected: set[int] = field(default_factory=set)
    open_solids: list[tuple[int, str, str]] = field(default_factory=list)  # (index, code, why solid)


def walk_objects(
    table: rhino3dm.File3dmObjectTable,
    solid_layers: list[bool],
    rules: ValidationRules,
    tick: Tick,
    start: int,
    stop: int,
) -> ObjectData:
    """Visit every object once; report progress from `start` to `stop` percent."""
    total = len(table)
    data = ObjectData(count=total)
    every = max(1, total // 40)
    countdown = 0
    kinds_by_class: dict[type, tuple[str, int]] = {}
    add_kind, add_name, add_box = data.kinds.append, data.names.append, data.boxes.extend
    add_invalid = data.invalid.append
    n_layers = len(solid_layers)
    for i, obj in enumerate(table):
        if countdown == 0:
            tick(start + (stop - start) * i // total, "metadata")
            countdown = every
        countdown -= 1
        geo = obj.Geometry
        attrs = obj.Attributes
        cls = type(geo)
        kind_info = kinds_by_class.get(cls)
        if kind_info is None:
            kind_info = kinds_by_class[cls] = _classify(cls)
        kind, family = kind_info
        add_kind(kind)
        add_name(attrs.Name)
        if not geo.IsValid:
            add_invalid(i)
            add_box(NAN_BOX)
            continue
        if family == _POINT:
            loc = geo.Location.Encode()
            x, y, z = loc["X"], loc["Y"], loc["Z"]
            add_box((x, y, z, x, y, z))
            continue
        enc = geo.GetBoundingBox().Encode()
        lo, hi = enc["Min"], enc["Max"]
        add_box((lo["X"], lo["Y"], lo["Z"], hi["X"], hi["Y"], hi["Z"]))
        if family == _SOLID:
            layer = attrs.LayerIndex
            on_solid_layer = 0 <= layer < n_layers and solid_layers[layer]
            reason, open_code = solid_state(geo, kind, on_solid_layer, rules)
            if reason:
                data.solid_expected.add(i)
                if open_code:
                    data.open_solids.append((i, open_code, reason))
    return data


_OTHER, _POINT, _SOLID = 0, 1, 2


def _classify(cls: type) -> tuple[str, int]:
    """(kind name, family): rhino3dm.Point boxes come from Location (cheaper than
    GetBoundingBox), SOLID_KINDS may need a closedness check."""
    name = cls.__name__
    if cls is rhino3dm.Point:
        return name, _POINT
    return name, _SOLID if name in SOLID_KINDS else _OTHER
