"""Model metadata: file facts, units, tolerances, layers, counts, user strings.

Table-level facts are read straight from the model; per-object facts (types,
names, layers, boxes) come from the single walk in walk.py. Counts are exact; the
lists are capped (max_listed_layers, max_listed_names, max_listed_strings) and
every string taken from the model is cut to max_message_chars, each cut noted
by a LAYERS_TRUNCATED, NAMES_TRUNCATED or STRINGS_TRUNCATED finding.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import rhino3dm

from .codes import LAYERS_TRUNCATED, NAMES_TRUNCATED, STRINGS_TRUNCATED, clip, finding
from .geometry import BoxColumns
from .layers import read_layer_tree
from .reader import LoadedModel
from .rules import ValidationRules

if TYPE_CHECKING:
    from .walk import ObjectData

Pending = tuple[int | None, dict[str, Any]]


# What the report shows when the model's settings cannot be read (a CHECK_ERROR says why).
UNKNOWN_SETTINGS: dict[str, Any] = {
    "unit_system": "Unset",
    "tolerances": {"absolute": None, "angle_degrees": None, "relative": None},
}


def read_settings(model: rhino3dm.File3dm) -> dict[str, Any]:
    settings = model.Settings
    unit = settings.ModelUnitSystem
    return {
        "unit_system": getattr(unit, "name", str(unit)),
        "tolerances": {
            "absolute": _finite(settings.ModelAbsoluteTolerance),
            "angle_degrees": _finite(settings.ModelAngleToleranceDegrees),
            "relative": _finite(settings.ModelRelativeTolerance),
        },
    }


def read_layers(model: rhino3dm.File3dm) -> list[dict[str, Any]]:
    """Layers in table order: index, name, full path, parent full path, id. Full paths are
    computed in layers.py (never with `Layer.FullPath`, which does not return on a parent cycle)."""
    return read_layer_tree(model)[0]


def read_blocks(model: rhino3dm.File3dm) -> list[dict[str, Any]]:
    """Block (instance) definitions in table order: name, id, number of member objects."""
    return [
        {"name": idef.Name or "", "id": str(idef.Id), "objects": len(idef.GetObjectIds())}
        for idef in model.InstanceDefinitions
    ]


def build_metadata(
    loaded: LoadedModel,
    settings: dict[str, Any],
    layers: list[dict[str, Any]],
    blocks: list[dict[str, Any]],
    data: ObjectData,
    boxes: BoxColumns,
    rules: ValidationRules,
    strings: tuple[int, list[tuple[str, str]]] = (0, []),
    file_name: str | None = None,
) -> tuple[dict[str, Any], list[Pending]]:
    """(the report's metadata, LAYERS/STRINGS/NAMES_TRUNCATED findings for what its caps cut).
    `strings`: (count, first pairs) from docstrings.read_document_strings."""
    model = loaded.model
    cut = _Clip(rules.max_message_chars)
    notes: list[Pending] = []
    per_layer = Counter(data.layers)
    listed = [
        {
            **layer,
            "name": cut(layer["name"]),
            "full_path": cut(layer["full_path"]),
            "parent": None if layer["parent"] is None else cut(layer["parent"]),
            "objects": per_layer.get(layer["index"], 0),
        }
        for layer in layers[: rules.max_listed_layers]
    ]
    notes += _note(LAYERS_TRUNCATED, "layers", len(layers), len(listed), cut.take())
    block_info = _blocks(blocks, data, rules.max_listed_names, cut)
    notes += _note(NAMES_TRUNCATED, "block definitions", len(blocks), len(block_info["definitions"]), cut.take())
    named = _named_objects(data.names, data.in_block, rules.max_listed_names, cut)
    notes += _note(NAMES_TRUNCATED, "object names", named.pop("distinct"), len(named["names"]), cut.take())
    string_count, pairs = strings
    document_strings = {cut(key): cut(value) for key, value in pairs}
    notes += _note(STRINGS_TRUNCATED, "document user strings", string_count, len(pairs), cut.take())
    archive_version = model.ArchiveVersion  # type: ignore[attr-defined]  # in rhino3dm, not in its stubs
    return {
        "file_name": file_name or loaded.path.name,
        "file_size_bytes": loaded.size,
        "archive_version": int(archive_version or loaded.archive_version),
        "application_name": cut(model.ApplicationName or "") or None,
        "created_by": cut(model.CreatedBy or "") or None,
        "last_edited_by": cut(model.LastEditedBy or "") or None,
        "revision": model.Revision,
        "unit_system": settings["unit_system"],
        "tolerances": settings["tolerances"],
        "object_count": data.count,
        "objects_by_type": dict(sorted(Counter(data.kinds).items())),
        "layer_count": len(layers),
        "layers": listed,
        "layers_truncated": len(listed) < len(layers),
        "block_definitions": block_info,
        "named_objects": named,
        "document_user_string_count": string_count,
        "document_user_strings": document_strings,
        "document_user_strings_truncated": len(pairs) < string_count,
        "bounding_box": overall_box(boxes),
    }, notes


class _Clip:
    """Cuts strings to the report's `max_message_chars` and counts how many it cut."""

    def __init__(self, limit: int) -> None:
        self.limit, self.cut = limit, 0

    def __call__(self, text: str) -> str:
        if len(text) <= self.limit:
            return text
        self.cut += 1
        return clip(text, self.limit)

    def take(self) -> int:
        cut, self.cut = self.cut, 0
        return cut


def _note(code: str, what: str, total: int, listed: int, shortened: int) -> list[Pending]:
    if listed >= total and not shortened:
        return []
    parts = [f"{listed} of {total} {what} listed"] if listed < total else []
    parts += [f"{shortened} string(s) cut to the report's max_message_chars"] if shortened else []
    return [(None, finding(code, "; ".join(parts), list=what, total=total, listed=listed, shortened=shortened))]


def _blocks(blocks: list[dict[str, Any]], data: ObjectData, cap: int, cut: _Clip) -> dict[str, Any]:
    listed = [
        {**block, "name": cut(block["name"]), "instances": data.instances.get(block["id"], 0)} for block in blocks[:cap]
    ]
    return {
        "count": len(blocks),
        "member_objects": len(data.in_block),
        "instances": sum(data.instances.values()),
        "nested_instances": data.nested_instances,
        "definitions": listed,
        "truncated": len(blocks) > cap,
    }


def _named_objects(names: list[str], in_block: set[int], cap: int, cut: _Clip) -> dict[str, Any]:
    """Names of the objects placed in the model (block members are counted with their block);
    `distinct` (popped by the caller) is how many different names there are."""
    if in_block:
        names = [n for i, n in enumerate(names) if i not in in_block]
    named = [n for n in names if n.strip()]
    distinct = sorted(set(named))
    return {
        "count": len(named),
        "unnamed": len(names) - len(named),
        "names": [cut(name) for name in distinct[:cap]],
        "truncated": len(distinct) > cap,
        "distinct": len(distinct),
    }


def overall_box(boxes: BoxColumns) -> dict[str, list[float]] | None:
    """Union of all usable object boxes; None when there are none."""
    if not boxes.usable:
        return None
    return {"min": [min(boxes.column(k)) for k in range(3)], "max": [max(boxes.column(k)) for k in range(3, 6)]}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
