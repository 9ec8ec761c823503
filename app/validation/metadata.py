"""Model metadata: file facts, units, tolerances, layers, counts, user strings.

Table-level facts are read straight from the model; per-object facts (types,
names, layers, boxes) come from the single walk in walk.py.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import rhino3dm

from .geometry import BoxColumns
from .reader import LoadedModel
from .rules import ValidationRules

if TYPE_CHECKING:
    from .walk import ObjectData


# What the report shows when the model's settings cannot be read (a CHECK_ERROR says why).
UNKNOWN_SETTINGS: dict[str, Any] = {
    "unit_system": "Unset", "tolerances": {"absolute": None, "angle_degrees": None, "relative": None},
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
    """Layers in table order: index, name, full path, parent full path, id."""
    raw = [(layer.Index, layer.Name or "", layer.FullPath or layer.Name or "", str(layer.ParentLayerId), str(layer.Id))
           for layer in model.Layers]
    path_by_id = {lid: path for _, _, path, _, lid in raw}
    return [
        {"index": index, "name": name, "full_path": path, "parent": path_by_id.get(parent), "id": lid}
        for index, name, path, parent, lid in raw
    ]


def read_blocks(model: rhino3dm.File3dm) -> list[dict[str, Any]]:
    """Block (instance) definitions in table order: name, id, number of member objects."""
    return [
        {"name": idef.Name or "", "id": str(idef.Id), "objects": len(idef.GetObjectIds())}
        for idef in model.InstanceDefinitions
    ]


def document_user_strings(model: rhino3dm.File3dm) -> dict[str, str]:
    table = model.Strings
    pairs = (table[k] for k in range(len(table)))
    return {str(key): str(value) for key, value in pairs}


def build_metadata(
    loaded: LoadedModel,
    settings: dict[str, Any],
    layers: list[dict[str, Any]],
    blocks: list[dict[str, Any]],
    data: ObjectData,
    boxes: BoxColumns,
    rules: ValidationRules,
    file_name: str | None = None,
) -> dict[str, Any]:
    model = loaded.model
    per_layer = Counter(data.layers)
    return {
        "file_name": file_name or loaded.path.name,
        "file_size_bytes": loaded.size,
        "archive_version": int(model.ArchiveVersion or loaded.archive_version),
        "application_name": model.ApplicationName or None,
        "created_by": model.CreatedBy or None,
        "last_edited_by": model.LastEditedBy or None,
        "revision": model.Revision,
        "unit_system": settings["unit_system"],
        "tolerances": settings["tolerances"],
        "object_count": data.count,
        "objects_by_type": dict(sorted(Counter(data.kinds).items())),
        "layers": [{**layer, "objects": per_layer.get(layer["index"], 0)} for layer in layers],
        "block_definitions": _blocks(blocks, data, rules.max_listed_names),
        "named_objects": _named_objects(data.names, data.in_block, rules.max_listed_names),
        "document_user_strings": document_user_strings(model),
        "bounding_box": overall_box(boxes),
    }


def _blocks(blocks: list[dict[str, Any]], data: ObjectData, cap: int) -> dict[str, Any]:
    listed = [{**block, "instances": data.instances.get(block["id"], 0)} for block in blocks[:cap]]
    return {
        "count": len(blocks),
        "member_objects": len(data.in_block),
        "instances": sum(data.instances.values()),
        "nested_instances": data.nested_instances,
        "definitions": listed,
        "truncated": len(blocks) > cap,
    }


def _named_objects(names: list[str], in_block: set[int], cap: int) -> dict[str, Any]:
    """Names of the objects placed in the model (block members are counted with their block)."""
    if in_block:
        names = [n for i, n in enumerate(names) if i not in in_block]
    named = [n for n in names if n.strip()]
    distinct = sorted(set(named))
    return {
        "count": len(named),
        "unnamed": len(names) - len(named),
        "names": distinct[:cap],
        "truncated": len(distinct) > cap,
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
