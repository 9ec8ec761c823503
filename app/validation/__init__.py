"""Validation of Rhino .3dm models (pure logic, no I/O besides reading the file).

    from app.validation import validate_path, UnreadableModelError
    report = validate_path("part.3dm", progress=lambda pct, stage: ...)

See docs/validation.md for the report schema and finding codes, docs/rulesets.md for the rules.
"""

from typing import Any

from .codes import FINDING_CODES, SCHEMA_VERSION, SEVERITY_BY_CODE
from .errors import ModelFileMissingError, UnreadableModelError
from .rules import RulesError, ValidationRules
from .rulesets import Ruleset, RulesetError, build_ruleset, load_dir, load_file


def __getattr__(name: str) -> Any:
    # Imported on first use: the pydantic models (only needed to validate or describe reports,
    # ~14 MB and ~100 ms kept out of every worker) and the engine (rhino3dm, ~18 MB and ~45 ms
    # kept out of the API, which only checks rulesets).
    if name in ("Report", "REPORT_JSON_SCHEMA"):
        from . import report  # noqa: PLC0415 (start-up cost, see above)

        return getattr(report, name)
    if name in ("validate_path", "ProgressCallback"):
        from . import engine  # noqa: PLC0415 (start-up cost, see above)

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FINDING_CODES",
    "REPORT_JSON_SCHEMA",
    "SCHEMA_VERSION",
    "SEVERITY_BY_CODE",
    "ModelFileMissingError",
    "ProgressCallback",
    "Report",
    "RulesError",
    "Ruleset",
    "RulesetError",
    "UnreadableModelError",
    "ValidationRules",
    "build_ruleset",
    "load_dir",
    "load_file",
    "validate_path",
]
