"""A validation report (docs/validation.md) shaped for reading: findings grouped by code, worst first."""

from __future__ import annotations

from collections import Counter
from typing import Any

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def finding_row(finding: dict[str, Any]) -> dict[str, Any]:
    """The columns a reader needs: the object's id, name and layer where the finding names them."""
    details = finding.get("details") or {}
    on_object = finding.get("object_id") is not None
    return {
        "severity": finding.get("severity", "info"),
        "message": finding.get("message", ""),
        "object_id": finding.get("object_id"),
        # Reports from before object_name/layer: a naming finding's details still name the object.
        "name": finding.get("object_name") or (details.get("name") if on_object else None) or None,
        "layer": finding.get("layer") or details.get("full_path"),
    }


def group_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One group per code, each with its worst severity; errors first, then by code."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        groups.setdefault(str(finding.get("code", "UNKNOWN")), []).append(finding_row(finding))
    shaped = []
    for code, rows in groups.items():
        worst = min((r["severity"] for r in rows), key=lambda s: SEVERITY_ORDER.get(s, 3))
        shaped.append({"code": code, "severity": worst, "rows": rows, "count": len(rows)})
    return sorted(shaped, key=lambda g: (SEVERITY_ORDER.get(g["severity"], 3), g["code"]))


def layer_rows(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"path": layer.get("full_path") or layer.get("name"), "objects": layer.get("objects", 0)}
        for layer in metadata.get("layers") or []
    ]


def report_view(report: dict[str, Any]) -> dict[str, Any]:
    """Summary, metadata and grouped findings of a stored report."""
    metadata = report.get("metadata") or {}
    summary = report.get("summary") or {}
    findings = report.get("findings") or []
    return {
        "passed": bool(summary.get("passed")),
        "counts": summary.get("counts") or dict(Counter(f.get("severity", "info") for f in findings)),
        "objects": summary.get("objects", metadata.get("object_count")),
        "units": metadata.get("unit_system"),
        "tolerances": metadata.get("tolerances") or {},
        "by_type": sorted((metadata.get("objects_by_type") or {}).items()),
        "layers": layer_rows(metadata),
        "layers_truncated": bool(metadata.get("layers_truncated")),
        "application": metadata.get("application_name"),
        "archive_version": metadata.get("archive_version"),
        "ruleset": report.get("ruleset") or {},
        "groups": group_findings(findings),
    }
