"""validate_path in the sandbox: every model gets a report, whatever it does to the engine.

    report = validate_guarded(path, limits=Limits(memory_mb=2048, timeout_s=600), ruleset=...)

Same contract as validate_path (UnreadableModelError for a file that is not a model), plus two
verdicts of its own, each a rejected report with one error finding and no metadata:

* `RESOURCE_LIMIT`: the validation hit the time or memory limit; details: `limit` (time or
  memory), the measured `seconds` and `peak_rss_mb` (the child's peak resident size), the limit,
  and what the file declared before it was read (`file_size_bytes`, `archive_version`,
  `object_records`);
* `ENGINE_CRASH`: the engine died (a signal, an exit without a report, an unexpected exception);
  details: `signal`, `exit_code` or `exception`, and the same measurements;
* `MODEL_TOO_LARGE`, before any child starts: the file declares more than the validation may
  take (prescan.py): compressed buffers that inflate past the memory limit, or more object
  records than the ruleset's `max_object_count`.

Neither is a check a ruleset can switch off, and neither is worth retrying.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .codes import SCHEMA_VERSION
from .engine import ProgressCallback, validate_path
from .errors import UnreadableModelError
from .prescan import declared_expansion
from .reader import FileFacts, inspect_file
from .rules import DEFAULT_RULES
from .rulesets import Ruleset, report_ref
from .sandbox import Limits, Outcome, run_sandboxed

MODEL_UNREADABLE = "MODEL_UNREADABLE"
RESOURCE_LIMIT = "RESOURCE_LIMIT"
ENGINE_CRASH = "ENGINE_CRASH"
MODEL_TOO_LARGE = "MODEL_TOO_LARGE"
MIB = 1024 * 1024


def run_guarded(
    target: Callable[..., Any],
    path: str | os.PathLike[str],
    *,
    limits: Limits,
    max_objects: int | None = None,
    progress: ProgressCallback | None = None,
    **kwargs: Any,
) -> tuple[Outcome, dict[str, Any]]:
    """`target(path, **kwargs)` as every reader of an uploaded model runs it: the header and framing
    checks (UnreadableModelError raised here), the declared-size guard (an Outcome of kind
    `too_large`, no child started), then the sandbox. Returns the outcome and what the file declared."""
    declared = declared_facts(path, inspect_file(path))
    too_large = refusal(declared, limits, max_objects)
    if too_large is not None:
        return Outcome("too_large", message=too_large), declared
    return run_sandboxed(target, str(path), limits=limits, progress=progress, **kwargs), declared


def validate_guarded(
    path: str | os.PathLike[str],
    *,
    limits: Limits,
    ruleset: Ruleset | None = None,
    file_name: str | None = None,
    progress: ProgressCallback | None = None,
    max_report_bytes: int | None = None,
) -> dict[str, Any]:
    outcome, declared = run_guarded(
        validate_path,
        path,
        limits=limits,
        max_objects=ruleset.rules.max_object_count if ruleset else None,
        progress=progress,
        ruleset=ruleset,
        file_name=file_name,
        max_report_bytes=max_report_bytes,
    )
    file_name = file_name or Path(path).name
    if outcome.kind == "value":
        report: dict[str, Any] = outcome.value  # what the child sent back, as JSON
        return report
    if outcome.unreadable is not None:
        raise outcome.unreadable
    if outcome.kind == "too_large":
        return failure_report(MODEL_TOO_LARGE, outcome.message, declared, ruleset, file_name)
    code = RESOURCE_LIMIT if outcome.kind == "limit" else ENGINE_CRASH
    return failure_report(code, f"validation {outcome.message}", {**outcome.details, **declared}, ruleset, file_name)


def declared_facts(path: str | os.PathLike[str], facts: FileFacts) -> dict[str, Any]:
    """What the file says about itself before it is read (reader.inspect_file, prescan.py)."""
    expansion = declared_expansion(path, facts.archive_version)
    return {
        "file_size_bytes": facts.size,
        "archive_version": facts.archive_version,
        "object_records": facts.object_records,
        "compressed_buffers": expansion.compressed_buffers,
        "declared_uncompressed_bytes": expansion.uncompressed_bytes,
    }


def refusal(declared: dict[str, Any], limits: Limits, max_objects: int | None) -> str | None:
    """Why the file is too large to read at all, or None."""
    inflated = declared["declared_uncompressed_bytes"]
    if limits.memory_mb > 0 and inflated > limits.memory_mb * MIB:
        return (
            f"the file declares {inflated / MIB:,.0f} MB of compressed data (mesh arrays, embedded files), "
            f"more than the {limits.memory_mb} MB a validation may use (VALIDATION_MAX_MEMORY_MB)"
        )
    records = declared["object_records"]
    if max_objects is not None and records is not None and records > max_objects:
        return f"the file declares {records} objects, more than the ruleset's max_object_count ({max_objects})"
    return None


def unreadable_report(error: UnreadableModelError, ruleset: Ruleset | None, file_name: str) -> dict[str, Any]:
    """The report of a file that is not a usable model (details: `reason_code`, see errors.py)."""
    return failure_report(MODEL_UNREADABLE, error.reason, {"reason_code": error.code}, ruleset, file_name)


def failure_report(
    code: str, message: str, details: dict[str, Any], ruleset: Ruleset | None, file_name: str
) -> dict[str, Any]:
    """A report for a model the engine could not finish: rejected, one error finding, no metadata."""
    rules = ruleset.rules if ruleset is not None else DEFAULT_RULES
    return {
        "schema_version": SCHEMA_VERSION,
        "summary": {
            "counts": {"error": 1, "warning": 0, "info": 0},
            "passed": False,
            "objects": 0,
            "duration_seconds": details.get("seconds", 0.0),
        },
        "metadata": None,
        "findings": [
            {
                "code": code,
                "severity": "error",
                "object_id": None,
                "message": message[:2000],
                "details": {"file_name": file_name, **details},
            }
        ],
        "ruleset": report_ref(ruleset, rules),
        "rules": rules.as_dict(),
    }
