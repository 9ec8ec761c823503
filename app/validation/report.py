"""Report model (pydantic v2) and its JSON schema.

The engine builds the report as plain dicts (cheap, JSON-safe); these models
define and document its shape and give `REPORT_JSON_SCHEMA`. The finding
codes and severities are defined in codes.py and re-exported here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .codes import (  # noqa: F401  (re-exported: the stable finding codes)
    BBOX_DEGENERATE,
    BLOCK_CYCLE,
    BREP_OPEN,
    COORDINATE_OUT_OF_RANGE,
    ERROR,
    FINDING_CODES,
    FINDINGS_TRUNCATED,
    GEOMETRY_INVALID,
    INFO,
    LAYER_CYCLE,
    LAYER_NAME_PATTERN,
    LAYERS_TRUNCATED,
    MESH_OPEN,
    MODEL_EMPTY,
    NAME_DUPLICATE,
    NAME_MISSING,
    NAME_PATTERN,
    NAMES_TRUNCATED,
    OBJECT_FAR_OUTSIDE,
    OBJECTS_UNREADABLE,
    REPORT_TRUNCATED,
    SCHEMA_VERSION,
    SEVERITY_BY_CODE,
    STRINGS_TRUNCATED,
    SUBD_OPEN,
    TOLERANCE_INVALID,
    TOLERANCE_LARGE,
    UNITS_UNSET,
    WARNING,
    Severity,
    finding,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Finding(_Strict):
    code: str = Field(description="Stable finding code, e.g. NAME_PATTERN, LAYER_CYCLE, REPORT_TRUNCATED")
    severity: Severity
    object_id: str | None = Field(description="Attributes.Id of the object, null for model-level findings")
    object_name: str | None = Field(None, description="Object findings: the object's name, null when it has none")
    layer: str | None = Field(None, description="Object findings: the full path of the object's layer")
    message: str = Field(description="At most max_message_chars characters")
    details: dict[str, Any] | None = Field(
        None,
        description="Strings cut to max_message_chars, lists to 100 items, no inf or NaN; "
        "dropped when the report had to shrink to max_report_bytes",
    )


class SeverityCounts(_Strict):
    error: int = 0
    warning: int = 0
    info: int = 0


class Summary(_Strict):
    counts: SeverityCounts = Field(description="Every violation, including findings left out by the per-code cap")
    passed: bool = Field(description="True when there is no error-severity violation")
    objects: int = Field(description="Object records rhino3dm read (len(File3dm.Objects)), block members included")
    duration_seconds: float


class BoundingBoxInfo(_Strict):
    min: tuple[float, float, float]
    max: tuple[float, float, float]


class LayerInfo(_Strict):
    index: int
    name: str
    full_path: str = Field(
        description="Parent::Child, computed from names and parent ids; a layer on a parent "
        "cycle (LAYER_CYCLE) has its own name"
    )
    parent: str | None = Field(description="Full path of the parent layer, null at top level")
    id: str
    objects: int = Field(description="Objects on this layer (block members included)")


class BlockDefinitionInfo(_Strict):
    name: str
    id: str
    objects: int = Field(description="Member objects of the definition")
    instances: int = Field(description="Instances placed in the model (not inside other blocks)")


class BlockDefinitions(_Strict):
    count: int
    member_objects: int = Field(description="Objects that belong to block definitions (part of object_count)")
    instances: int = Field(description="Block instances placed in the model")
    nested_instances: int = Field(description="Block instances inside block definitions")
    definitions: list[BlockDefinitionInfo] = Field(description="Capped by max_listed_names (NAMES_TRUNCATED)")
    truncated: bool


class RulesetRef(_Strict):
    name: str | None = Field(description="The ruleset's name; null for ad-hoc rules passed as overrides")
    version: int | None = Field(description="The registry's version; null for a ruleset file used offline")
    sha256: str = Field(description="SHA-256 of the ruleset's canonical JSON (of the effective rules when unnamed)")


class Tolerances(_Strict):
    absolute: float | None
    angle_degrees: float | None
    relative: float | None


class NamedObjects(_Strict):
    count: int
    unnamed: int
    names: list[str] = Field(description="Distinct names, sorted, capped by max_listed_names (NAMES_TRUNCATED)")
    truncated: bool


class Metadata(_Strict):
    file_name: str
    file_size_bytes: int
    archive_version: int
    application_name: str | None
    created_by: str | None
    last_edited_by: str | None
    revision: int | None
    unit_system: str
    tolerances: Tolerances
    object_count: int
    objects_by_type: dict[str, int]
    layer_count: int = Field(description="Layers in the model")
    layers: list[LayerInfo] = Field(description="In table order, capped by max_listed_layers (LAYERS_TRUNCATED)")
    layers_truncated: bool
    block_definitions: BlockDefinitions
    named_objects: NamedObjects
    document_user_string_count: int = Field(description="Entries of the document string table")
    document_user_strings: dict[str, str] = Field(
        description="The first max_listed_strings entries (STRINGS_TRUNCATED)"
    )
    document_user_strings_truncated: bool
    bounding_box: BoundingBoxInfo | None = Field(description="Union of valid object boxes; null without geometry")


class Report(_Strict):
    schema_version: Literal["1.0"]
    summary: Summary
    metadata: Metadata | None = Field(
        description="Null when the model was not read to the end: the one error "
        "finding is MODEL_UNREADABLE, MODEL_TOO_LARGE, RESOURCE_LIMIT or "
        "ENGINE_CRASH (app/validation/guarded.py)"
    )
    findings: list[Finding]
    ruleset: RulesetRef
    rules: dict[str, Any] = Field(description="The ValidationRules used")


REPORT_JSON_SCHEMA: dict[str, Any] = Report.model_json_schema()
