"""Findings assembled within the report's caps, and the report kept under max_report_bytes.

`finalise` applies the ruleset's severity overrides, counts every violation, keeps at most
`max_findings_per_code` findings per code (FINDINGS_TRUNCATED for the rest), cuts each message
and each string in the details to `max_message_chars`, each list in the details to
DETAIL_ITEMS items, and turns a non-finite number in the details into null.

`fit_report` guarantees `len(json.dumps(report)) <= max_report_bytes`. While the report is too
large it, in turn: drops every finding's details; keeps only the findings that fit (errors first,
then warnings, then info, each in report order); empties the metadata lists (layers, object
names, block definitions, document strings; their `truncated` flags set); replaces `rules` with
{} and cuts the file-level strings to 200 characters; keeps no finding but its own. After each
shrink of the rest, the findings that fit are taken again. Summary counts stay exact (dropped
findings stay counted) and count the REPORT_TRUNCATED finding (info) that says what was dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .codes import FINDINGS_TRUNCATED, REPORT_TRUNCATED, clip, finding
from .rules import ValidationRules

Pending = tuple[int | None, dict[str, Any]]
DETAIL_ITEMS = 100
_RANK = {"error": 0, "warning": 1, "info": 2}
_FILE_STRINGS = ("file_name", "application_name", "created_by", "last_edited_by")


def finalise(
    pending: list[Pending],
    object_id: Callable[[int], str],
    rules: ValidationRules,
    place: Callable[[int], tuple[str | None, str | None]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """`object_id(index)`: the id of the object at that table index (it may raise); `place(index)`:
    its name and its layer's full path (each None when unknown), kept as `object_name` and `layer`."""
    cap, overrides, chars = rules.max_findings_per_code, rules.severity, rules.max_message_chars
    counts = {"error": 0, "warning": 0, "info": 0}
    kept: list[dict[str, Any]] = []
    per_code: dict[str, int] = {}
    for index, item in pending:
        level = overrides.get(item["code"])
        if level == "off":
            continue
        if level is not None:
            item["severity"] = level
        counts[item["severity"]] += 1
        seen = per_code[item["code"]] = per_code.get(item["code"], 0) + 1
        if seen <= cap:
            if index is not None:
                item["object_id"] = _object_id(object_id, index)
                if place is not None:
                    name, layer = place(index)
                    item["object_name"] = clip(name, chars) if name else None
                    item["layer"] = clip(layer, chars) if layer else None
            item["message"] = clip(item["message"], chars)
            if "details" in item:
                item["details"] = bound(item["details"], chars)
            kept.append(item)
    for code, seen in sorted(per_code.items()):
        if seen > cap:
            counts["info"] += 1
            kept.append(
                finding(
                    FINDINGS_TRUNCATED,
                    f"{seen - cap} more {code} findings omitted (cap {cap} per code)",
                    finding_code=code,
                    total=seen,
                    omitted=seen - cap,
                )
            )
    return kept, counts


def bound(value: Any, chars: int) -> Any:
    """A finding's details with strings cut, lists capped and non-finite numbers as null."""
    kind = type(value)
    if kind is str:
        return value if len(value) <= chars else clip(value, chars)
    if kind is dict:
        return {key: bound(item, chars) for key, item in value.items()}
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is list or kind is tuple:
        return [bound(item, chars) for item in value[:DETAIL_ITEMS]]
    return value


def _object_id(object_id: Callable[[int], str], index: int) -> str | None:
    try:
        return object_id(index)
    except Exception:  # noqa: BLE001 (the finding stands without its id)
        return None


def fit_report(report: dict[str, Any], limit: int) -> dict[str, Any]:
    size = len(json.dumps(report))
    if size <= limit:
        return report
    everything: list[dict[str, Any]] = report["findings"]
    dropped: list[str] = []
    note = finding(
        REPORT_TRUNCATED,
        "",
        size=size,
        limit=limit,
        dropped=dropped,
        findings_total=len(everything),
        findings_kept=len(everything),
    )
    reserve = len(json.dumps(note)) + 400  # its message and the names of the stages it lists
    for f in everything:
        f.pop("details", None)
    dropped.append("finding details")
    for shrink, stage in ((None, "findings"), (_empty_lists, "metadata lists"), (_drop_rules, "rules")):
        if len(json.dumps(report)) + reserve <= limit:
            break
        if shrink is not None:
            shrink(report)
        dropped.append(stage)
        report["findings"] = _fitting(report, everything, limit - reserve)  # refilled after each shrink
    if len(json.dumps(report)) + reserve > limit:
        report["findings"] = []
        dropped.append("all findings")
    kept = report["findings"]
    note["details"]["findings_kept"] = len(kept)
    note["message"] = (
        f"the report ({size} bytes) exceeded max_report_bytes ({limit}): dropped {', '.join(dropped)}; "
        f"{len(kept)} of {len(everything)} findings kept, summary counts include all"
    )
    kept.append(note)
    report["summary"]["counts"]["info"] += 1
    if len(json.dumps(report)) > limit:  # only if the reserve was too small: the note alone fits
        report["findings"] = [note]
    return report


def _fitting(report: dict[str, Any], findings: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The findings that fit in `budget` bytes with the rest of the report, by severity then order."""
    room = budget - len(json.dumps({**report, "findings": []}))
    keep: list[int] = []
    for k in sorted(range(len(findings)), key=lambda k: _RANK.get(findings[k]["severity"], 3)):
        cost = len(json.dumps(findings[k])) + 2  # ", " between items
        if cost > room:
            continue
        room -= cost
        keep.append(k)
    return [findings[k] for k in sorted(keep)]


def _empty_lists(report: dict[str, Any]) -> None:
    meta = report["metadata"]
    meta["layers"], meta["layers_truncated"] = [], bool(meta.get("layer_count"))
    meta["document_user_strings"] = {}
    meta["document_user_strings_truncated"] = bool(meta.get("document_user_string_count"))
    meta["named_objects"]["names"], meta["named_objects"]["truncated"] = [], bool(meta["named_objects"]["count"])
    blocks = meta["block_definitions"]
    blocks["definitions"], blocks["truncated"] = [], bool(blocks["count"])


def _drop_rules(report: dict[str, Any]) -> None:
    report["rules"] = {}
    meta = report["metadata"]
    for key in _FILE_STRINGS:
        if meta.get(key):
            meta[key] = clip(meta[key], 200)
