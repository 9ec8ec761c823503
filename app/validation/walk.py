"""The single pass over the object table.

Everything the metadata, nomenclature and geometry checks need is collected here in one walk,
into flat lists of plain Python values. This is the hot path, so it is deliberately plain:

* each File3dmObject is fetched once (rhino3dm builds new wrappers on every table access: a
  second walk, or a second fetch for a finding's id, costs ~30 us per object); the attributes of
  the first KEEP_ATTRIBUTES objects are kept for the ids of findings (measured: each held wrapper
  costs ~370 bytes, so only a bounded number are held);
* the bounding box is taken with one `Encode()` call (one dict) rather than Min/Max/X/Y/Z
  property calls; a Point's box is its `Location.Encode()`;
* an annotation's box needs the dimension style it uses (rhino3dm's binding takes it as an
  argument), looked up once per DimensionStyleId; rhino3dm has no font engine, so text boxes
  have no glyph width (the geometry checks do not call them zero-size);
* block membership (`IsInstanceDefinitionObject`) is only read when the model has block
  definitions, and the page/model space only for annotations and details (layout objects are
  left out of the model's extent and outlier statistics);
* boxes go into one flat array('d') (48 bytes per object), not tuples;
* the object kind is the Python class name (`type(geo)`), not `ObjectType`;
* `Attributes.Id` is not read here (the engine fetches ids only for objects with findings), except
  for block instances inside block definitions, whose ids give the nesting (blocks.py);
* closedness (IsSolid/IsClosed) is only computed where a solid is expected.

A check that raises on one object is recorded as a CHECK_ERROR (check, exception type, kind),
and the walk goes on: what a model contains never crashes the report.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rhino3dm

from .geometry import SOLID_KINDS, solid_state
from .rules import ValidationRules

Tick = Callable[[int, str], None]
NAN_BOX = (math.nan,) * 6
KEEP_ATTRIBUTES = 2000


@dataclass
class ObjectData:
    """Per-object columns, indexed like the object table."""

    count: int = 0
    kinds: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    layers: array[int] = field(default_factory=lambda: array("i"))  # layer index per object
    # 6 doubles per object: minx, miny, minz, maxx, maxy, maxz; NaN where there is no box
    boxes: array[float] = field(default_factory=lambda: array("d"))
    no_box: set[int] = field(default_factory=set)  # box unknown (check error) or not meaningful
    invalid: list[int] = field(default_factory=list)
    in_block: set[int] = field(default_factory=set)  # members of block (instance) definitions
    page_space: set[int] = field(default_factory=set)  # annotations and details on layouts
    solid_expected: set[int] = field(default_factory=set)
    open_solids: list[tuple[int, str, str]] = field(default_factory=list)  # (index, code, why solid)
    not_allowed: list[int] = field(default_factory=list)  # kind not in rules.allowed_object_types
    instances: dict[str, int] = field(default_factory=dict)  # definition id -> placed instances
    nested_instances: int = 0  # instances inside block definitions
    nested_refs: list[tuple[str, str]] = field(default_factory=list)  # (their object id, definition placed)
    user_text: dict[int, dict[str, str]] = field(default_factory=dict)  # only with required_user_text
    errors: list[tuple[int, str, str, str]] = field(default_factory=list)  # (index, check, exc type, message)
    # the attributes wrappers of the first KEEP_ATTRIBUTES objects, for the ids of objects with
    # findings (fetching an object again costs ~30 us); bounded, since each one held costs ~370 bytes
    attributes: list[Any] = field(default_factory=list)


_OTHER, _POINT, _SOLID, _ANNOTATION, _INSTANCE, _DETAIL = range(6)
_PAGE = rhino3dm.ActiveSpace.PageSpace  # type: ignore[attr-defined]  # in rhino3dm, not in its stubs


class _DimStyles:
    """The dimension style an annotation's bounding box is computed with, looked up once per id.
    rhino3dm's FindId never misses: an unknown id gives its built-in "Default" style."""

    def __init__(self, model: Any) -> None:
        self._table = model.DimStyles
        self._by_id: dict[str, Any] = {}

    def __call__(self, geo: Any) -> Any:
        key = str(geo.DimensionStyleId)
        style = self._by_id.get(key)
        if style is None:
            style = self._by_id[key] = self._table.FindId(geo.DimensionStyleId)
        return style


def walk_objects(
    model: Any,
    solid_layers: list[bool],
    rules: ValidationRules,
    tick: Tick,
    start: int,
    stop: int,
) -> ObjectData:
    """Visit every object once; report progress from `start` to `stop` percent."""
    table = model.Objects
    total = len(table)
    data = ObjectData(count=total)
    every = max(1, total // 40)
    countdown = 0
    families: dict[type, tuple[str, int, bool]] = {}
    allowed = set(rules.allowed_object_types)
    want_user_text = bool(rules.required_user_text)
    dimstyles = _DimStyles(model)
    has_blocks = len(model.InstanceDefinitions) > 0
    add_kind, add_name, add_box, add_layer = data.kinds.append, data.names.append, data.boxes.extend, data.layers.append
    n_layers = len(solid_layers)
    for i, obj in enumerate(table):
        if countdown == 0:
            tick(start + (stop - start) * i // total, "metadata")
            countdown = every
        countdown -= 1
        check = "read object"
        try:
            geo = obj.Geometry
            attrs = obj.Attributes
            if i < KEEP_ATTRIBUTES:
                data.attributes.append(attrs)
            cls = type(geo)
            info = families.get(cls)
            if info is None:
                info = families[cls] = _classify(cls, allowed)
            kind, family, kind_allowed = info
            add_kind(kind)
            check = "attributes"
            add_name(attrs.Name)
            layer = attrs.LayerIndex
            add_layer(layer)
            member = has_blocks and attrs.IsInstanceDefinitionObject
            if member:
                data.in_block.add(i)
            elif not kind_allowed:
                data.not_allowed.append(i)
            if want_user_text and not member:
                check = "user text"
                data.user_text[i] = dict(attrs.GetUserStrings())
            check = "IsValid"
            if not geo.IsValid:
                data.invalid.append(i)
                add_box(NAN_BOX)
                continue
            check = "bounding box"
            if family == _POINT:
                loc = geo.Location.Encode()
                x, y, z = loc["X"], loc["Y"], loc["Z"]
                add_box((x, y, z, x, y, z))
                continue
            if family == _ANNOTATION:
                if attrs.ActiveSpace == _PAGE:
                    data.page_space.add(i)
                enc = geo.GetBoundingBox(dimstyles(geo)).Encode()
            else:
                if family == _DETAIL and attrs.ActiveSpace == _PAGE:
                    data.page_space.add(i)
                enc = geo.GetBoundingBox().Encode()
            lo, hi = enc["Min"], enc["Max"]
            add_box((lo["X"], lo["Y"], lo["Z"], hi["X"], hi["Y"], hi["Z"]))
            if family == _INSTANCE:
                check = "block instance"
                _instance(data, i, geo, attrs if member else None, lo["X"] > hi["X"])
            elif family == _SOLID:
                check = "closed solid"
                on_solid_layer = 0 <= layer < n_layers and solid_layers[layer]
                reason, open_code = solid_state(geo, kind, on_solid_layer, rules)
                if reason:
                    data.solid_expected.add(i)
                    if open_code:
                        data.open_solids.append((i, open_code, reason))
        except Exception as exc:  # noqa: BLE001 (one object's trouble must not end the report)
            _record_error(data, i, check, exc)
    return data


def _instance(data: ObjectData, i: int, geo: Any, member_attrs: Any, empty_box: bool) -> None:
    """`member_attrs`: the attributes of an instance inside a block definition, else None."""
    key = str(geo.ParentIdefId)
    if member_attrs is not None:
        data.nested_instances += 1
        data.nested_refs.append((str(member_attrs.Id), key))
    else:
        data.instances[key] = data.instances.get(key, 0) + 1
    if empty_box:  # rhino3dm stores no box for an instance: nothing to judge it by
        data.no_box.add(i)


def _record_error(data: ObjectData, i: int, check: str, exc: Exception) -> None:
    """Keep the columns aligned (one entry per object) and remember what failed."""
    if len(data.attributes) <= i < KEEP_ATTRIBUTES:
        data.attributes.append(None)
    if len(data.kinds) <= i:
        data.kinds.append("unknown")
    if len(data.names) <= i:
        data.names.append("")
    if len(data.layers) <= i:
        data.layers.append(-1)
    if len(data.boxes) < 6 * (i + 1):  # failed before its box was known
        data.boxes.extend(NAN_BOX)
        data.no_box.add(i)
    data.errors.append((i, check, type(exc).__name__, str(exc)[:300]))


def _classify(cls: type, allowed: set[str]) -> tuple[str, int, bool]:
    """(kind name, family, allowed by rules.allowed_object_types). A base class name in the
    allowed list (e.g. "Curve") allows every subclass."""
    name = cls.__name__
    lineage = {base.__name__ for base in cls.__mro__}
    kind_allowed = not allowed or bool(lineage & allowed)
    if cls is rhino3dm.Point:
        return name, _POINT, kind_allowed
    if issubclass(cls, rhino3dm.AnnotationBase):
        return name, _ANNOTATION, kind_allowed
    if cls is rhino3dm.InstanceReference:
        return name, _INSTANCE, kind_allowed
    if cls is rhino3dm.GeometryBase:  # a detail (layout viewport): rhino3dm has no class for it
        return name, _DETAIL, kind_allowed
    return name, _SOLID if name in SOLID_KINDS else _OTHER, kind_allowed
