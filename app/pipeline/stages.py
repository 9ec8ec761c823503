"""The six stages of an import, as plain functions of a file path and earlier outputs.

Each returns a JSON-safe dict stored under the item's `outputs[stage]`; running a stage twice
overwrites its own output (idempotent). A StageRejected means the input is bad: not retried.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.config import settings

if TYPE_CHECKING:  # the stages import app.validation lazily (see _read)
    from app.validation.rulesets import Ruleset

MAGIC = b"3D Geometry File Format "


class StageRejected(Exception):
    """The item cannot pass this stage whatever we retry (bad input)."""


def preprocess(path: Path) -> dict[str, Any]:
    """Size and type checks, and the checksum."""
    if not path.is_file():
        raise FileNotFoundError(f"stored file is missing: {path.name}")
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


def _read(path: Path) -> Any:
    from app.validation import UnreadableModelError
    from app.validation.reader import read_model

    try:
        return read_model(path).model
    except UnreadableModelError as exc:
        raise StageRejected(exc.reason) from exc


def parse(path: Path) -> dict[str, Any]:
    """Read the model with rhino3dm: what it holds, in counts."""
    model = _read(path)
    return {
        "objects": len(model.Objects),
        "layers": len(model.Layers),
        "archive_version": model.ArchiveVersion,
    }


def classify(path: Path) -> dict[str, Any]:
    """A coarse category by object types and layers (e.g. solid-model, mesh-model, drawing)."""
    model = _read(path)
    kinds = Counter(str(obj.Geometry.ObjectType).rsplit(".", 1)[-1] for obj in model.Objects)
    total = sum(kinds.values())
    if total == 0:
        category = "empty"
    else:
        top, count = kinds.most_common(1)[0]
        share = count / total
        category = {
            "Brep": "solid-model", "Extrusion": "solid-model", "Mesh": "mesh-model", "SubD": "subd-model",
            "Curve": "drawing", "Point": "point-cloud", "PointSet": "point-cloud",
        }.get(top, "mixed") if share >= 0.6 else "mixed"
    return {"category": category, "object_types": dict(kinds)}


def extract(path: Path) -> dict[str, Any]:
    """Metadata: units, tolerances, layers (reuses app.validation's readers)."""
    from app.validation import metadata

    model = _read(path)
    settings_ = metadata.read_settings(model)
    layers = metadata.read_layers(model)
    return {"settings": settings_, "layers": [layer["full_path"] for layer in layers]}


def validate(path: Path, *, ruleset: Ruleset | None = None, file_name: str | None = None) -> dict[str, Any]:
    """The full validation report (app.validation) under `ruleset`, naming the file `file_name`."""
    from app.validation import UnreadableModelError, validate_path

    try:
        return validate_path(path, ruleset=ruleset, file_name=file_name)
    except UnreadableModelError as exc:
        raise StageRejected(exc.reason) from exc
