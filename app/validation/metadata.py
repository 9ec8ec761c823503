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


def document_user_strings(model: rhino3dm.File3dm) -> dict[str, str]:
    table = model.Strings
    pairs = (table[k] for k in range(len(table)))
    return {str(key): str(value) for key, value in pairs}


def build_metadata(
    loaded: LoadedModel,
    settings: dict[str, Any],
    layers: list[dict[str, Any]],
    data: ObjectData,
    boxes: BoxColumns,
    rules: ValidationRules,
) -> dict[str, Any]:
    model = loaded.model
    return {
        "file_name": loaded.path.name,
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
        "layers": layers,
        "named_objects": _named_objects(data.names, rules.max_listed_names),
        "document_user_strings": document_user_strings(model),
        "bounding_box": overall_box(boxes),
    }


def _named_objects(names: list[str], cap: int) -> dict[str, Any]:
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
