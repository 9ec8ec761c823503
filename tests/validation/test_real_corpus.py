"""The validator on real Rhino models from public McNeel repositories (tests/fixtures/real/SOURCES.md).

For every file: no crash, the object count is rhino3dm's own, the report is strict JSON that fits
the schema, and its findings match the reviewed golden report in tests/fixtures/real/expected/.
After a deliberate change to the checks, rewrite the golden reports and review every diff:

    .venv/bin/pytest tests/validation/test_real_corpus.py --update-golden
    git diff tests/fixtures/real/expected/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rhino3dm

from app.validation import Report, UnreadableModelError, validate_path

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "real"
EXPECTED = CORPUS / "expected"
FILES = sorted(CORPUS.glob("*.3dm"))


def stored_ids(path: Path) -> set[str]:
    """Object ids the file stores. openNURBS invents ids while reading archives that store none
    (Rhino 1 and 2 files): those differ between two reads of the same file."""
    first, second = (rhino3dm.File3dm.Read(str(path)) for _ in range(2))
    return {
        str(a.Attributes.Id)
        for a, b in zip(first.Objects, second.Objects, strict=True)
        if a.Attributes.Id == b.Attributes.Id
    }


def golden_view(report: dict[str, Any], stable_ids: set[str]) -> dict[str, Any]:
    """What the golden file pins: verdict, counts, and every finding kept (not timings, nor ids
    that change from read to read)."""
    meta = report["metadata"]
    return {
        "summary": {key: report["summary"][key] for key in ("passed", "counts", "objects")},
        "archive_version": meta["archive_version"],
        "application_name": meta["application_name"],
        "unit_system": meta["unit_system"],
        "objects_by_type": meta["objects_by_type"],
        "layers": len(meta["layers"]),
        "block_definitions": {
            key: meta["block_definitions"][key] for key in ("count", "member_objects", "instances", "nested_instances")
        },
        "findings": [
            {
                "code": f["code"],
                "severity": f["severity"],
                "message": f["message"],
                "object_id": (
                    f["object_id"] if f["object_id"] in stable_ids or f["object_id"] is None else "(made at read)"
                ),
            }
            for f in report["findings"]
        ],
    }


def outcome(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(golden view, full report or None when the file is unreadable)."""
    try:
        report = validate_path(path, file_name=path.name)
    except UnreadableModelError as exc:
        return {"unreadable": {"code": exc.code, "reason": exc.reason}}, None
    return golden_view(report, stored_ids(path)), report


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 30, f"expected at least 30 real models in {CORPUS}"
    assert (CORPUS / "SOURCES.md").is_file()
    listed = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    unlisted = [p.name for p in FILES if p.name not in listed]
    assert not unlisted, f"files without a source in SOURCES.md: {unlisted}"
    assert sum(p.stat().st_size for p in FILES) < 16 * 1024 * 1024


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_a_real_model_gets_a_report_that_matches_its_golden_one(path: Path, request: pytest.FixtureRequest) -> None:
    view, report = outcome(path)
    golden = EXPECTED / f"{path.name}.json"
    if report is not None:
        model = rhino3dm.File3dm.Read(str(path))
        assert report["summary"]["objects"] == len(model.Objects)
        assert sum(report["metadata"]["objects_by_type"].values()) == len(model.Objects)
        assert report["metadata"]["file_name"] == path.name
        json.dumps(report, allow_nan=False)  # strict JSON: no inf or NaN anywhere
        Report.model_validate(report)
        crashed = [f for f in report["findings"] if f["code"] == "CHECK_ERROR"]
        assert not crashed, f"a check raised on a real model: {crashed[:3]}"
    if request.config.getoption("--update-golden"):
        golden.write_text(json.dumps(view, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        return
    assert golden.is_file(), f"no golden report {golden.name}: run with --update-golden and review it"
    assert view == json.loads(golden.read_text(encoding="utf-8"))
