"""The client's file name comes back exactly as sent: raw UTF-8, RFC 5987 filename*, Latin-1."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest

from tests.utils.api import batch_items, report_of, upload, wait_batch_done, wait_finished

pytestmark = pytest.mark.integration

NAME = "Façade – plan 01 (ü).3dm"
BOUNDARY = "librarian-test-boundary-7f3a"


def multipart(disposition: bytes, content: bytes) -> tuple[bytes, dict[str, str]]:
    """A one-part multipart body with the Content-Disposition header bytes given verbatim."""
    body = (
        f"--{BOUNDARY}\r\n".encode() + b"Content-Disposition: " + disposition + b"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + content + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def assert_name_kept(http, part_id: str, expected: str) -> None:
    part = wait_finished(http, part_id)
    assert part["filename"] == expected
    assert report_of(http, part_id)["metadata"]["file_name"] == expected


def test_a_utf8_name_with_spaces_and_punctuation_comes_back_unchanged(http, worker, models):
    answer = upload(http, models["valid_part"], name=NAME)  # httpx sends the name as raw UTF-8
    assert answer.status_code == 202, answer.text
    assert_name_kept(http, answer.json()["part_id"], NAME)


def test_an_rfc5987_filename_star_wins_over_the_plain_fallback(http, worker, models):
    disposition = f'form-data; name="file"; filename="fallback.3dm"; filename*=UTF-8\'\'{quote(NAME)}'.encode()
    body, headers = multipart(disposition, models["valid_part"].read_bytes())
    answer = http.post("/api/v1/parts", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    assert_name_kept(http, answer.json()["part_id"], NAME)


def test_a_latin1_encoded_name_is_read_as_latin1(http, worker, models):
    body, headers = multipart(
        'form-data; name="file"; filename="Façade ü.3dm"'.encode("latin-1"), models["valid_part"].read_bytes()
    )
    answer = http.post("/api/v1/parts", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    assert_name_kept(http, answer.json()["part_id"], "Façade ü.3dm")


def test_batch_items_keep_the_clients_names(http, worker, models):
    names = [NAME, f"plan {uuid.uuid4().hex[:4]} – ü.3dm"]
    files = [("files", (name, models["valid_part"].read_bytes())) for name in names]
    batch_id = http.post("/api/v1/batches", files=files).json()["batch_id"]
    wait_batch_done(http, batch_id)
    items = batch_items(batch_id)
    assert sorted(item.filename for item in items) == sorted(names)
    for item in items:
        assert item.status == "published"
        assert report_of(http, str(item.part_id))["metadata"]["file_name"] == item.filename
        assert http.get(f"/api/v1/parts/{item.part_id}").json()["filename"] == item.filename


@pytest.mark.parametrize(
    ("path", "expected", "wrong"),
    [
        ("/api/v1/parts", "file", "files"),
        ("/api/v1/parts", "file", "upload"),
        ("/api/v1/batches", "files", "file"),
    ],
)
def test_a_file_in_an_unknown_field_is_422_naming_the_expected_field(http, models, path, expected, wrong):
    answer = http.post(path, files=[(wrong, ("a.3dm", models["valid_part"].read_bytes()))])
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert f"'{wrong}'" in detail and f"multipart field '{expected}'" in detail


@pytest.mark.parametrize(("path", "field"), [("/api/v1/parts", "file"), ("/api/v1/batches", "files")])
def test_an_unknown_text_field_is_422_and_owner_and_ruleset_stay_allowed(http, worker, models, path, field):
    model = (field, ("a.3dm", models["valid_part"].read_bytes()))
    unknown = http.post(path, files=[model], data={"owner": "ann", "colour": "red"})
    assert unknown.status_code == 422, unknown.text
    assert "'colour'" in unknown.json()["detail"] and f"'{field}'" in unknown.json()["detail"]
    known = http.post(path, files=[model], data={"owner": "ann", "ruleset": "default"})
    assert known.status_code == 202, known.text
    assert known.json()["ruleset"]["name"] == "default"
