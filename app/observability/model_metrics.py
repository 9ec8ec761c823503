"""What a finished part says about the models: metrics, one `part finished` log line, Sentry events.

validate_file calls `part_finished` once per report it stored and `part_failed` once when it gives
up. Everything is read from the report (a plain dict, as stored), so the numbers are those of the
report the user sees:

* findings are counted per code and severity from the findings kept in the list plus, for a code
  the per-code cap cut, the `omitted` of its FINDINGS_TRUNCATED finding; findings a report over
  max_report_bytes dropped altogether (REPORT_TRUNCATED) are counted under the code `omitted`,
  so the counts per severity always add up to the report's summary counts;
* check errors are counted per (check, object type) from the CHECK_ERROR findings' details; those
  the report no longer lists count under ("omitted", "omitted").

Labels are bounded: ruleset names come from the registry, codes from app/validation/codes.py and
the four sandbox verdicts, checks and object types from the checks' own names and rhino3dm's class
names; never a file name, an object id or a string from the model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from app.core import rulesets as registry
from app.core.config import settings
from app.core.db import session_scope
from app.observability import metrics as m
from app.observability.sentry import capture_check_errors
from app.validation.codes import CHECK_ERROR, FINDING_CODES, FINDINGS_TRUNCATED, SEVERITY_BY_CODE

log = structlog.get_logger("librarian.validation")

# The verdicts of app/validation/guarded.py (not imported: it loads rhino3dm), all error severity.
MODEL_UNREADABLE = "MODEL_UNREADABLE"
VERDICT_CODES = (MODEL_UNREADABLE, "MODEL_TOO_LARGE", "RESOURCE_LIMIT", "ENGINE_CRASH")
DEFAULT_SEVERITY: dict[str, str] = {**SEVERITY_BY_CODE, **dict.fromkeys(VERDICT_CODES, "error")}
SEVERITIES = ("error", "warning", "info")
OMITTED = "omitted"  # counted in the report's summary, but the report no longer says which
OTHER = "other"
MODEL_LEVEL = "model"  # object_type of a check error on a table (settings, layers, ...), not an object
TOP_CODES = 5
_MB = 1_000_000
_KNOWN_CODES = frozenset(FINDING_CODES) | frozenset(VERDICT_CODES) | {OMITTED}
_LABEL_CHARS = 64


def known_rulesets() -> list[str]:
    """The registry's names (the worker synced its files at start-up), or DEFAULT_RULESET alone
    when the database cannot be read."""
    try:
        with session_scope() as session:
            names = [row.name for row in registry.list_latest(session)]
    except SQLAlchemyError:
        names = []
    return sorted({*names, settings.DEFAULT_RULESET})


def initialise_series() -> None:
    """Create the model series at 0 for every known ruleset (called at worker start)."""
    m.initialise_model_series(known_rulesets(), DEFAULT_SEVERITY)


def size_class(size_bytes: int) -> str:
    for limit, label in ((_MB, "lt_1mb"), (10 * _MB, "1mb_10mb"), (100 * _MB, "10mb_100mb")):
        if size_bytes < limit:
            return label
    return "ge_100mb"


def finding_counts(report: dict[str, Any]) -> Counter[tuple[str, str]]:
    """(code, severity) -> how many: every violation the report's summary counts."""
    counts: Counter[tuple[str, str]] = Counter()
    severity_of: dict[str, str] = {}
    capped: Counter[str] = Counter()
    for f in report.get("findings") or ():
        code, severity = f["code"], f["severity"]
        counts[(code, severity)] += 1
        severity_of.setdefault(code, severity)
        details = f.get("details") or {}
        if code == FINDINGS_TRUNCATED and "finding_code" in details:
            capped[details["finding_code"]] += int(details.get("omitted") or 0)
    overrides = (report.get("rules") or {}).get("severity") or {}
    for code, n in capped.items():
        severity = severity_of.get(code) or overrides.get(code) or DEFAULT_SEVERITY.get(code, "info")
        counts[(code, severity)] += n
    listed: Counter[str] = Counter()
    for (_, severity), n in counts.items():
        listed[severity] += n
    summary = report["summary"]["counts"]
    for severity in SEVERITIES:
        rest = int(summary.get(severity, 0)) - listed[severity]
        if rest > 0:
            counts[(OMITTED, severity)] += rest
    return counts


def check_error_counts(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(check, object type) -> {"count": n, "exceptions": sorted exception class names}."""
    found: dict[tuple[str, str], dict[str, Any]] = {}

    def add(key: tuple[str, str], n: int, exception: str | None) -> None:
        entry = found.setdefault(key, {"count": 0, "exceptions": set()})
        entry["count"] += n
        if exception:
            entry["exceptions"].add(_bounded(exception))

    for f in report.get("findings") or ():
        details = f.get("details") or {}
        if f["code"] == CHECK_ERROR:
            if "check" in details:
                add((_bounded(details["check"]), _bounded(details.get("kind") or MODEL_LEVEL)), 1, details["exception"])
            else:
                add((OMITTED, OMITTED), 1, None)
        elif f["code"] == FINDINGS_TRUNCATED and details.get("finding_code") == CHECK_ERROR:
            add((OMITTED, OMITTED), int(details.get("omitted") or 0), None)
    return {key: {**entry, "exceptions": sorted(entry["exceptions"])} for key, entry in found.items()}


def part_finished(
    *,
    part_id: str,
    outcome: str,
    ruleset: str,
    ruleset_version: int | None,
    report: dict[str, Any],
    duration_s: float,
    size_bytes: int,
) -> None:
    """A part validated or rejected with `report`: metrics, log line, Sentry events for check errors."""
    m.PARTS_FINISHED.labels(outcome, ruleset).inc()
    counts = finding_counts(report)
    for (code, severity), n in counts.items():
        m.FINDINGS.labels(code if code in _KNOWN_CODES else OTHER, severity, ruleset).inc(n)
    size = size_class(size_bytes)
    m.VALIDATION_DURATION.labels(size).observe(duration_s)
    m.MODEL_SIZE.observe(size_bytes)
    objects = report["summary"]["objects"]
    if report.get("metadata") is not None:
        m.MODEL_OBJECTS.observe(objects)
    reason_code = _unreadable_reason(report)
    if reason_code is not None:
        m.MODELS_UNREADABLE.labels(reason_code if reason_code in m.UNREADABLE_REASONS else OTHER).inc()
    errors = check_error_counts(report)
    for (check, object_type), entry in errors.items():
        m.CHECK_ERRORS.labels(check, object_type).inc(entry["count"])
    if errors:
        archive_version = (report.get("metadata") or {}).get("archive_version")
        capture_check_errors(part_id, {k: v for k, v in errors.items() if k[0] != OMITTED}, archive_version)
    per_code: Counter[str] = Counter()
    for (code, _), n in counts.items():
        per_code[code] += n
    log.info(
        "part finished",
        part_id=part_id,
        outcome=outcome,
        ruleset=ruleset,
        ruleset_version=ruleset_version,
        counts={severity: report["summary"]["counts"].get(severity, 0) for severity in SEVERITIES},
        top_codes=dict(sorted(per_code.items(), key=lambda item: (-item[1], item[0]))[:TOP_CODES]),
        reason_code=reason_code,
        check_errors=sum(entry["count"] for entry in errors.values()),
        duration_s=round(duration_s, 3),
        size_bytes=size_bytes,
        size_class=size,
        object_count=objects,
    )


def part_failed(*, part_id: str, ruleset: str, error: str, size_bytes: int | None = None) -> None:
    """validate_file gave up on the part (its retries spent, or an error not worth retrying)."""
    m.PARTS_FINISHED.labels("failed", ruleset).inc()
    log.info("part finished", part_id=part_id, outcome="failed", ruleset=ruleset, error=error, size_bytes=size_bytes)


def _unreadable_reason(report: dict[str, Any]) -> str | None:
    for f in report.get("findings") or ():
        if f["code"] == MODEL_UNREADABLE:
            return str((f.get("details") or {}).get("reason_code") or OTHER)
    return None


def _bounded(value: Any) -> str:
    """A check or class name as a label: names from our code and rhino3dm are short."""
    text = str(value)
    return text if len(text) <= _LABEL_CHARS else OTHER
