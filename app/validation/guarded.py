"""validate_path in the sandbox: every model gets a report, whatever it does to the engine.

    report = validate_guarded(path, limits=Limits(memory_mb=2048, timeout_s=600), ruleset=...)

Same contract as validate_path (UnreadableModelError for a file that is not a model), plus two
verdicts of its own, each a rejected report with one error finding and no metadata:

* `RESOURCE_LIMIT`: the validation hit the time or memory limit; details: `limit` (time or
  memory), the measured `seconds` and `peak_rss_mb` (the child's peak resident size), the limit, and what the file declared
  before it was read (`file_size_bytes`, `archive_version`, `object_records`);
* `ENGINE_CRASH`: the engine died (a signal, an exit without a report, an unexpected exception);
  details: `signal`, `exit_code` or `exception`, and the same measurements.

Neither is a check a ruleset can switch off, and neither is worth retrying.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .codes import SCHEMA_VERSION
from .engine import ProgressCallback, validate_path
from .reader import inspect_file
from .rulesets import Ruleset
from .sandbox import Limits, run_sandboxed

RESOURCE_LIMIT = "RESOURCE_LIMIT"
ENGINE_CRASH = "ENGINE_CRASH"


def validate_guarded(
    path: str | os.PathLike[str],
    *,
    limits: Limits,
    ruleset: Ruleset | None = None,
    file_name: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    facts = inspect_file(path)  # a file that is not a model is refused without starting a child
    outcome = run_sandboxed(validate_path, str(path), ruleset=ruleset, file_name=file_name,
                            limits=limits, progress=progress)
    if outcome.kind == "value":
        return outcome.value
    if outcome.unreadable is not None:
        raise outcome.unreadable
    declared = {"file_size_bytes": facts.size, "archive_version": facts.archive_version,
                "object_records": facts.object_records}
    code = RESOURCE_LIMIT if outcome.kind == "limit" else ENGINE_CRASH
    return failure_report(code, f"validation {outcome.message}", {**outcome.details, **declared},
                          ruleset, file_name or Path(path).name)


def failure_report(code: str, message: str, details: dict[str, Any], ruleset: Ruleset | None,
                   file_name: str) -> dict[str, Any]:
    """A report for a model the engine could not finish: rejected, one error finding, no metadata."""
    return {
        "schema_version": SCHEMA_VERSION,
        "summary": {"counts": {"error": 1, "warning": 0, "info": 0}, "passed": False, "objects": 0,
                    "duration_seconds": details.get("seconds", 0.0)},
        "metadata": None,
        "findings": [{"code": code, "severity": "error", "object_id": None, "message": message,
                      "details": {"file_name": file_name, **details}}],
        "ruleset": ruleset.ref() if ruleset is not None else None,
    }
