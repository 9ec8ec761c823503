"""Parts over real HTTP with a real worker: upload, validate with rhino3dm, read the report."""

from __future__ import annotations

import pytest

from tests.utils.api import upload, wait_finished

pytestmark = pytest.mark.integration

EXPECTED = {  # fixture → (final status, finding codes that must be present)
    "valid_part": ("validated", set()),
    "bad_names": ("rejected", {"NAME_PATTERN"}),
    "invalid_geometry": ("rejected", {"GEOMETRY_INVALID"}),
    "open_brep": ("rejected", {"BREP_OPEN"}),
    "empty_model": ("rejected", {"MODEL_EMPTY"}),
    "corrupt_bytes": ("rejected", {"MODEL_UNREADABLE"}),
    "truncated": ("rejected", {"MODEL_UNREADABLE"}),
    "not_3dm": ("rejected", {"MODEL_UNREADABLE"}),
}


def test_each_fixture_ends_in_the_expected_status_with_the_expected_findings(http, worker, models):
    from app.validation import REPORT_JSON_SCHEMA  # noqa: F401  (the schema is importable)

    submitted = {}
    for name in EXPECTED:
        answer = upload(http, models[name], name=f"{name}.3dm")
        assert answer.status_code == 202, (name, answer.text)
        body = answer.json()
        assert body["status"] == "queued"
        submitted[name] = body["part_id"]
    for name, part_id in submitted.items():
        status, codes = EXPECTED[name]
        part = wait_finished(http, part_id)
        assert part["status"] == status, (name, part)
        report = http.get(f"/api/v1/parts/{part_id}/report")
        assert report.status_code == 200
        found = {f["code"] for f in report.json()["findings"]}
        assert codes <= found, (name, found)
        assert report.json()["summary"]["passed"] is (status == "validated")
        assert part["summary"] == report.json()["summary"]
        assert part["progress"] == 100


def test_valid_report_matches_the_published_schema(http, worker, models):
    import jsonschema

    from app.validation import REPORT_JSON_SCHEMA

    part_id = upload(http, models["valid_part"]).json()["part_id"]
    wait_finished(http, part_id)
    jsonschema.validate(http.get(f"/api/v1/parts/{part_id}/report").json(), REPORT_JSON_SCHEMA)


def test_report_is_409_until_finished_and_list_filters_by_status(http, worker, models):
    part_id = upload(http, models["large_model"]).json()["part_id"]
    early = http.get(f"/api/v1/parts/{part_id}/report")
    if early.status_code != 200:  # it may already be done on a fast machine
        assert early.status_code == 409
    wait_finished(http, part_id)
    listed = http.get("/api/v1/parts", params={"status": "validated", "limit": 500}).json()
    assert listed["total"] >= 1
    assert all(item["status"] == "validated" for item in listed["items"])
    assert http.get("/api/v1/parts", params={"status": "bogus"}).status_code == 422


def test_revalidate_replaces_the_report_without_duplicating_rows(http, worker, models):
    part_id = upload(http, models["bad_names"]).json()["part_id"]
    first = wait_finished(http, part_id)
    again = http.post(f"/api/v1/parts/{part_id}/revalidate")
    assert again.status_code == 202
    second = wait_finished(http, part_id)
    assert second["attempts"] == first["attempts"] + 1
    assert second["id"] == part_id
    listed = http.get("/api/v1/parts", params={"limit": 500}).json()["items"]
    assert sum(1 for item in listed if item["id"] == part_id) == 1


def test_oversize_upload_is_413_and_leaves_nothing_in_storage(api, broker, tmp_root):
    from tests.conftest import stack_env, start_api

    process, base = start_api("api-small-limit", env=stack_env(MAX_FILE_SIZE_MB="1"))
    try:
        import httpx

        storage = tmp_root / "storage"
        before = sorted(p for p in storage.rglob("*") if p.is_file()) if storage.exists() else []
        body = b"3D Geometry File Format " + b"\0" * (3 * 1024 * 1024)
        answer = httpx.post(f"{base}/api/v1/parts", files={"file": ("big.3dm", body)}, timeout=30)
        assert answer.status_code == 413
        assert "limit" in answer.json()["detail"]
        after = sorted(p for p in storage.rglob("*") if p.is_file()) if storage.exists() else []
        assert after == before
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("filename", "content", "status"),
    [
        ("model.txt", b"3D Geometry File Format ", 415),
        ("empty.3dm", b"", 422),
    ],
)
def test_wrong_files_are_refused_with_a_json_reason(http, filename, content, status):
    answer = http.post("/api/v1/parts", files={"file": (filename, content)})
    assert answer.status_code == status
    assert answer.json()["detail"]


def test_non_multipart_and_missing_file_are_4xx(http):
    raw = http.post("/api/v1/parts", content=b"raw bytes", headers={"content-type": "application/octet-stream"})
    assert raw.status_code == 415
    assert http.post("/api/v1/parts", data={"owner": "x"}, files={}).status_code in (415, 422)
    missing = http.post("/api/v1/parts", files={"other": ("", b"")}, data={"owner": "x"})
    assert missing.status_code in (415, 422)


def test_path_traversal_names_never_leave_the_storage_dir(http, worker, models, tmp_root):
    answer = upload(http, models["valid_part"], name="../../../../tmp/evil.3dm")
    assert answer.status_code == 202
    part = wait_finished(http, answer.json()["part_id"])
    assert part["filename"] == "../../../../tmp/evil.3dm"  # kept for display only
    from app.core.config import settings

    stored = list(settings.storage_dir.rglob("evil.3dm"))
    assert stored and all(settings.storage_dir in p.resolve().parents for p in stored)
    assert part["status"] == "validated"


def test_unknown_part_is_404(http):
    import uuid

    assert http.get(f"/api/v1/parts/{uuid.uuid4()}").status_code == 404
    assert http.get("/api/v1/parts/not-a-uuid").status_code == 422
