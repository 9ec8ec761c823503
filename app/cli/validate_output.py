"""What `librarian validate` prints: a rich table, a JSON array or JUnit XML (for CI test reporters).

JSON and XML are returned as UTF-8 bytes, so file names come out unchanged whatever the locale.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.validation import Ruleset

FIRST_ERRORS = 3
MESSAGE_WIDTH = 90
STYLE = {"passed": "green", "rejected": "yellow", "unreadable": "red", "failed": "red"}
# Characters XML 1.0 cannot carry (object names and file names can hold them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class FileResult:
    file: str  # as given on the command line (or found under a given directory)
    status: str  # passed | rejected | unreadable | failed (the engine crashed)
    report: dict[str, Any] | None
    error: dict[str, str] | None  # {"code", "reason"} when there is no report
    seconds: float


def render_json(results: list[FileResult]) -> bytes:
    entries = [{"file": r.file, "status": r.status, "report": r.report, "error": r.error} for r in results]
    return (json.dumps(entries, allow_nan=False, ensure_ascii=False, indent=2) + "\n").encode()


def render_junit(results: list[FileResult], elapsed: float) -> bytes:
    counts = {
        "tests": str(len(results)),
        "failures": str(sum(r.status == "rejected" for r in results)),
        "errors": str(sum(r.status in ("unreadable", "failed") for r in results)),
        "time": f"{elapsed:.3f}",
    }
    suites = ET.Element("testsuites", {"name": "librarian validate", **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": "librarian validate", "skipped": "0", **counts})
    for result in results:
        case = ET.SubElement(
            suite, "testcase", classname="librarian.validate", name=_xml(result.file), time=f"{result.seconds:.3f}"
        )
        if result.error is not None:
            ET.SubElement(case, "error", type=_xml(result.error["code"]), message=_xml(result.error["reason"]))
            continue
        assert result.report is not None
        if result.status == "rejected":
            errors = result.report["summary"]["counts"]["error"]
            failure = ET.SubElement(case, "failure", type="rejected", message=_plural(errors, "error"))
            failure.text = _xml(_finding_lines(result.report, "error"))
        warnings = _finding_lines(result.report, "warning")
        if warnings:
            ET.SubElement(case, "system-out").text = _xml(warnings)
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def render_table(results: list[FileResult], *, details: bool, elapsed: float, ruleset: Ruleset) -> None:
    console = _console(results)
    table = Table(title=f"librarian validate (ruleset {ruleset.name}, sha256 {ruleset.sha256[:12]})")
    table.add_column("file", overflow="fold")
    table.add_column("result")
    for name in ("errors", "warnings", "infos", "objects"):
        table.add_column(name, justify="right")
    table.add_column("first errors", overflow="fold")
    for result in results:
        table.add_row(
            Text(result.file),
            Text(result.status, style=STYLE[result.status]),
            *_counts(result),
            Text(_first_errors(result)),
        )
    console.print(table)
    if details:
        for result in results:
            _print_details(result, console)
    statuses = [r.status for r in results]
    tally = ", ".join(f"{statuses.count(s)} {s}" for s in STYLE if s in statuses)
    console.print(Text(f"{_plural(len(results), 'file')}: {tally} in {elapsed:.1f} s"))


def _console(results: list[FileResult]) -> Console:
    """A terminal keeps its width; a pipe or CI log gets one wide enough that file names never fold."""
    console = Console()
    if console.is_terminal:
        return console
    longest = max((cell_len(result.file) for result in results), default=0)
    return Console(width=max(120, longest + 160))


def _counts(result: FileResult) -> list[str]:
    if result.report is None:
        return ["-"] * 4
    counts = result.report["summary"]["counts"]
    return [str(counts["error"]), str(counts["warning"]), str(counts["info"]), str(result.report["summary"]["objects"])]


def _first_errors(result: FileResult) -> str:
    if result.error is not None:
        return result.error["reason"]
    assert result.report is not None
    errors = [f for f in result.report["findings"] if f["severity"] == "error"]
    lines = [_cut(f"{f['code']} {f['message']}") for f in errors[:FIRST_ERRORS]]
    more = result.report["summary"]["counts"]["error"] - len(lines)
    return "\n".join(lines + ([f"... {more} more"] if more > 0 else []))


def _print_details(result: FileResult, console: Console) -> None:
    findings = result.report["findings"] if result.report else []
    if not findings:
        return
    table = Table(title=Text(result.file), title_justify="left")
    for name in ("severity", "code", "object id", "message"):
        table.add_column(name, overflow="fold")
    for f in findings:
        table.add_row(f["severity"], f["code"], f.get("object_id") or "-", Text(f["message"]))
    console.print(table)


def _finding_lines(report: dict[str, Any], severity: str) -> str:
    return "\n".join(
        f"{f['code']} {f.get('object_id') or '-'}: {f['message']}"
        for f in report["findings"]
        if f["severity"] == severity
    )


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_WIDTH else text[: MESSAGE_WIDTH - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
