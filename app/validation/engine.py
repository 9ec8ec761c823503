"""validate_path: read once, walk once, check, assemble the report dict within its caps (bounds.py).

Progress (at most ~50 calls, percents never decrease):
  0..10   "reading"       header/framing checks and rhino3dm read
  10..85  "metadata"      the single walk over the objects (collects everything)
  85      "nomenclature"  name checks over the collected names
  92      "geometry"      geometry checks over the collected boxes
  100     "done"
"""

from __future__ import annotations

import os
import time
import uuid  # noqa: F401  (rhino3dm returns object ids as uuid.UUID: imported here, not on the first id)
from collections.abc import Callable, Mapping
from typing import Any

from . import blocks as block_checks
from . import conventions, docstrings, geometry, metadata, nomenclature, units
from . import layers as layer_tree
from .bounds import finalise, fit_report
from .codes import CHECK_ERROR, MODEL_EMPTY, OBJECTS_UNREADABLE, SCHEMA_VERSION, finding
from .reader import LoadedModel, read_model
from .rules import ValidationRules, coerce_rules
from .rulesets import Ruleset, report_ref
from .walk import ObjectData, walk_objects

ProgressCallback = Callable[[int, str], None]
Pending = tuple[int | None, dict[str, Any]]
_DEFAULT_TOL = 1e-9


class _Progress:
    """Forwards to the caller's callback; drops repeats and backward steps."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = -1

    def __call__(self, percent: int, stage: str) -> None:
        percent = max(0, min(100, int(percent)))
        if self._callback is None or (percent <= self._last and percent != 100):
            return
        self._last = percent
        self._callback(percent, stage)


def validate_path(
    path: str | os.PathLike[str],
    *,
    rules: ValidationRules | Mapping[str, Any] | None = None,
    ruleset: Ruleset | None = None,
    progress: ProgressCallback | None = None,
    file_name: str | None = None,
    max_report_bytes: int | None = None,
) -> dict[str, Any]:
    """Validate one .3dm file and return the report as a JSON-safe dict.

    `ruleset` (a named Ruleset) takes precedence over `rules` (plain overrides); the report's
    `ruleset` names it. `file_name` is the name to show (the client's), default the path's.
    `max_report_bytes` is the operator's ceiling (MAX_REPORT_BYTES) over the ruleset's own.
    Raises UnreadableModelError (with `.reason`) when the file cannot be read.
    """
    started = time.perf_counter()
    rules = ruleset.rules if ruleset is not None else coerce_rules(rules)
    tick = _Progress(progress)
    tick(0, "reading")
    loaded = read_model(path)
    model = loaded.model
    tick(10, "reading")
    pending: list[Pending] = []
    guard = _Guard(pending)
    settings = guard("settings", metadata.read_settings, metadata.UNKNOWN_SETTINGS, model)
    layers, layer_cycles = guard("layers", layer_tree.read_layer_tree, ([], []), model)
    blocks = guard("block definitions", metadata.read_blocks, [], model)
    solid_layers = geometry.solid_layer_flags([layer["full_path"] for layer in layers], rules)
    data = walk_objects(model, solid_layers, rules, tick, 10, 85)
    tick(85, "nomenclature")
    pending += _model_level(loaded, data)
    pending += nomenclature.check_object_names(data.names, data.kinds, rules, data.in_block)
    pending += nomenclature.check_layer_names(layers, rules)
    pending += layer_tree.check_cycles(layers, layer_cycles)
    pending += block_checks.check_cycles(
        blocks, guard("block cycles", block_checks.read_block_cycles, [], model, data.nested_refs)
    )
    pending += conventions.check_layers(layers, rules)
    pending += conventions.check_objects(data, rules)
    pending += conventions.check_units(settings["unit_system"], rules)
    pending += conventions.check_blocks(blocks, rules)
    tick(92, "geometry")
    tol = units.usable_tolerance(settings) or _DEFAULT_TOL
    boxes = geometry.BoxColumns(data.boxes, data.in_block | data.no_box | data.page_space)
    pending += units.check_settings(settings, rules)
    pending += geometry.check_objects(data, boxes, tol)
    pending += geometry.check_far_outside(data, boxes, tol, rules)
    pending += [
        (
            i,
            finding(
                CHECK_ERROR,
                f"check {check!r} failed on a {data.kinds[i]}: {error}: {message}",
                check=check,
                exception=error,
                kind=data.kinds[i],
            ),
        )
        for i, check, error, message in data.errors
    ]
    strings = guard(
        "document strings",
        docstrings.read_document_strings,
        (0, []),
        model,
        loaded.path,
        loaded.archive_version,
        rules.max_listed_strings,
    )
    meta, notes = metadata.build_metadata(loaded, settings, layers, blocks, data, boxes, rules, strings, file_name)

    def object_id(index: int) -> str:
        attributes = data.attributes[index] if index < len(data.attributes) else None
        if attributes is None:
            attributes = model.Objects[index].Attributes  # type: ignore[index]  # stubs lack __getitem__
        return str(attributes.Id)

    def place(index: int) -> tuple[str | None, str | None]:
        name = data.names[index] if index < len(data.names) else None
        layer = data.layers[index] if index < len(data.layers) else -1
        return name or None, layers[layer]["full_path"] if 0 <= layer < len(layers) else None

    findings, counts = finalise(pending + notes, object_id, rules, place)
    report = {
        "schema_version": SCHEMA_VERSION,
        "summary": {
            "counts": counts,
            "passed": counts["error"] == 0,
            "objects": data.count,
            "duration_seconds": round(time.perf_counter() - started, 6),
        },
        "metadata": meta,
        "findings": findings,
        "ruleset": report_ref(ruleset, rules),
        "rules": rules.as_dict(),
    }
    report = fit_report(report, min(rules.max_report_bytes, max_report_bytes or rules.max_report_bytes))
    tick(100, "done")
    return report


class _Guard:
    """Runs a model-level read; if it raises, records a CHECK_ERROR and returns `default`."""

    def __init__(self, pending: list[Pending]) -> None:
        self.pending = pending

    def __call__(self, check: str, read: Callable[..., Any], default: Any, *args: Any) -> Any:
        try:
            return read(*args)
        except Exception as exc:  # noqa: BLE001 (what a model contains never ends the report)
            self.pending.append(
                (
                    None,
                    finding(
                        CHECK_ERROR,
                        f"reading the model's {check} failed: {type(exc).__name__}: {str(exc)[:300]}",
                        check=check,
                        exception=type(exc).__name__,
                        kind=None,
                    ),
                )
            )
            return default


def _model_level(loaded: LoadedModel, data: ObjectData) -> list[Pending]:
    out: list[Pending] = []
    if data.count == 0:
        out.append((None, finding(MODEL_EMPTY, "the model contains no objects")))
    records = loaded.object_records
    if records is not None and data.count < records:
        out.append(
            (
                None,
                finding(
                    OBJECTS_UNREADABLE,
                    f"only {data.count} of {records} object records in the file could be read",
                    object_records=records,
                    objects_read=data.count,
                ),
            )
        )
    return out
