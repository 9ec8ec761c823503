"""The six stages of an import, as plain functions of a file path and earlier outputs.

Each returns a JSON-safe dict stored under the item's `outputs[stage]`; running a stage twice
overwrites its own output (idempotent). A StageRejected means the input is bad: not retried; a
missing stored file is FileNotFoundError, retried like any storage error.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.config import settings
from app.validation import ModelFileMissingError, UnreadableModelError
from app.validation.rulesets import Ruleset
from app.validation.sandbox import Limits

MAGIC = b"3D Geometry File Format "


class StageRejected(Exception):
    """The item cannot pass this stage whatever we retry (bad input)."""


def _missing(path: Path) -> FileNotFoundError:
    """The stored file is not there: storage trouble (not mounted, not synced yet), retried as a
    transient error in every stage, not bad input."""
    return FileNotFoundError(f"stored file is missing: {path.name}")


def preprocess(path: Path) -> dict[str, Any]:
    """Size and type checks, and the checksum."""
    if not path.is_file():
        raise _missing(path)
    size = path.stat().st_size
    if size == 0:
        raise StageRejected("the file is empty")
    if size > settings.max_file_size_bytes:
        raise StageRejected(f"the file is over the {settings.MAX_FILE_SIZE_MB} MB limit")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        head = handle.read(len(MAGIC))
        digest.update(head)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if head != MAGIC:
        raise StageRejected("not a Rhino .3dm file (bad header)")
    return {"size_bytes": size, "sha256": digest.hexdigest()}


def _sandboxed(read: Callable[[Path], dict[str, Any]], path: Path) -> dict[str, Any]:
    """Run `read` on the model as validation does (app/validation/guarded.py: declared-size guard,
    then the sandbox): a model refused, over a limit or crashing the engine is bad input for this
    stage (StageRejected, not retried)."""
    from app.validation.guarded import run_guarded  # noqa: PLC0415 (loads rhino3dm: ~100 ms, kept out of the API)

    try:
        outcome, _ = run_guarded(read, path, limits=Limits(*settings.validation_limits))
    except ModelFileMissingError as exc:
        raise _missing(path) from exc
    except UnreadableModelError as exc:
        raise StageRejected(exc.reason) from exc
    if outcome.kind == "value":
        return outcome.value
    if outcome.unreadable is not None:
        raise StageRejected(outcome.unreadable.reason)
    reason = {"too_large": "MODEL_TOO_LARGE", "limit": "RESOURCE_LIMIT"}.get(outcome.kind, "ENGINE_CRASH")
    raise StageRejected(f"{reason}: reading the model {outcome.message}")


def _model(path: Path) -> Any:
    """The model read by rhino3dm (in the sandbox child), or UnreadableModelError."""
    from app.validation.reader import read_model  # noqa: PLC0415 (rhino3dm: runs in the sandbox child only)

    return read_model(path).model


def _parse(path: Path) -> dict[str, Any]:
    model = _model(path)
    return {"objects": len(model.Objects), "layers": len(model.Layers), "archive_version": model.ArchiveVersion}


def parse(path: Path) -> dict[str, Any]:
    """Read the model with rhino3dm: what it holds, in counts."""
    return _sandboxed(_parse, path)


def _classify(path: Path) -> dict[str, Any]:
    model = _model(path)
    kinds = Counter(str(obj.Geometry.ObjectType).rsplit(".", 1)[-1] for obj in model.Objects)
    total = sum(kinds.values())
    if total == 0:
        category = "empty"
    else:
        top, count = kinds.most_common(1)[0]
        share = count / total
        category = (
            {
                "Brep": "solid-model",
                "Extrusion": "solid-model",
                "Mesh": "mesh-model",
                "SubD": "subd-model",
                "Curve": "drawing",
                "Point": "point-cloud",
                "PointSet": "point-cloud",
            }.get(top, "mixed")
            if share >= 0.6
            else "mixed"
        )
    return {"category": category, "object_types": dict(kinds)}


def classify(path: Path) -> dict[str, Any]:
    """A coarse category by object types and layers (e.g. solid-model, mesh-model, drawing)."""
    return _sandboxed(_classify, path)


def _extract(path: Path) -> dict[str, Any]:
    from app.validation import metadata  # noqa: PLC0415 (rhino3dm: runs in the sandbox child only)

    model = _model(path)
    settings_ = metadata.read_settings(model)
    layers = metadata.read_layers(model)
    return {"settings": settings_, "layers": [layer["full_path"] for layer in layers]}


def extract(path: Path) -> dict[str, Any]:
    """Metadata: units, tolerances, layers (reuses app.validation's readers)."""
    return _sandboxed(_extract, path)


def validate(path: Path, *, ruleset: Ruleset | None = None, file_name: str | None = None) -> dict[str, Any]:
    """The full validation report (app.validation, in its sandbox) under `ruleset`, naming the file
    `file_name`; a model that hits a limit gets a rejected report saying so (RESOURCE_LIMIT)."""
    from app.validation.guarded import validate_guarded  # noqa: PLC0415 (loads rhino3dm: ~100 ms, kept out of the API)

    limits = Limits(*settings.validation_limits)
    try:
        return validate_guarded(
            path, limits=limits, ruleset=ruleset, file_name=file_name, max_report_bytes=settings.MAX_REPORT_BYTES
        )
    except ModelFileMissingError as exc:
        raise _missing(path) from exc
    except UnreadableModelError as exc:
        raise StageRejected(exc.reason) from exc
