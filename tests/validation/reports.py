"""How the validation tests get a report: `validate_path`, then what every report must satisfy
(strict JSON: no inf or NaN anywhere; the pydantic Report model; within max_report_bytes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.validation import Report, ValidationRules, validate_path


def checked(report: dict[str, Any], max_report_bytes: int = ValidationRules().max_report_bytes) -> dict[str, Any]:
    json.dumps(report, allow_nan=False)
    Report.model_validate(report)
    assert len(json.dumps(report)) <= max_report_bytes
    return report


def validate(path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """validate_path(path, **kwargs), checked."""
    report = validate_path(path, **kwargs)
    limit = report["rules"].get("max_report_bytes", ValidationRules().max_report_bytes)
    return checked(report, limit)
