"""Rulesets over real HTTP with a real worker: versions, errors, and the ruleset a submission runs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, func, select

from app.core.config import settings
from app.core.db import get_engine
from app.models import Batch, BatchItem, Part
from tests.conftest import TMP, stack_database_url, stack_env
from tests.fixtures.models_3dm import named_objects
from tests.utils.api import batch_items, report_of, upload, wait_batch_done, wait_finished
from tests.utils.processes import ManagedProcess, cli, free_port

pytestmark = pytest.mark.integration

TEAM_NAMES = ["SF-C12-D-001", "SF-C12-D-002", "SF-C14-W-001"]
TEAM_RULES = {
    "description": "Team SF: SF-Cnn-X-nnn",
    "name_pattern": "SF-C[0-9]{2}-[A-Z]-[0-9]{3}",
    "name_expected": "SF-Cnn-X-nnn, e.g. SF-C12-D-001",
}


@pytest.fixture(scope="module")
def team_model(tmp_root: Path) -> Path:
    """Valid geometry whose object names follow team SF's scheme, not Librarian's default one."""
    return named_objects(tmp_root / "models", TEAM_NAMES, "team_sf.3dm")


def team_name() -> str:
    return f"team-sf-{uuid.uuid4().hex[:8]}"


def put(http, name: str, content) -> httpx.Response:
    return http.put(f"/api/v1/rulesets/{name}", json=content)


def ref(ruleset: dict) -> dict:
    return {"name": ruleset["name"], "version": ruleset["version"], "sha256": ruleset["sha256"]}


def test_put_creates_version_1_then_a_new_version_only_when_the_content_changes(http):
    name = team_name()
    created = put(http, name, TEAM_RULES)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["version"], body["source"]) == (name, 1, "api")
    assert body["description"] == TEAM_RULES["description"]
    assert body["content"] == TEAM_RULES
    assert body["rules"]["name_pattern"] == TEAM_RULES["name_pattern"]
    assert body["rules"]["unique_names"] is True  # a field left out keeps its default
    assert len(body["sha256"]) == 64 and body["created_at"]

    same = put(http, name, TEAM_RULES)
    assert same.status_code == 200
    assert (same.json()["version"], same.json()["sha256"]) == (1, body["sha256"])

    changed = put(http, name, {**TEAM_RULES, "unique_names": False})
    assert changed.status_code == 200
    assert changed.json()["version"] == 2 and changed.json()["sha256"] != body["sha256"]
    assert http.get(f"/api/v1/rulesets/{name}").json() == changed.json()
    assert http.get(f"/api/v1/rulesets/{name}/versions/1").json() == body  # kept as it was
    listed = {item["name"]: item for item in http.get("/api/v1/rulesets").json()["items"]}
    assert listed[name]["version"] == 2 and listed[name]["source"] == "api"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"name_pattern": "SF-(C"}, "name_pattern"),
        ({"required_user_text": {"phase": "[unclosed"}}, "required_user_text"),
        ({"unique_names": "yes"}, "unique_names"),
        ({"max_object_count": 1.5}, "max_object_count"),
        ({"colour": "blue"}, "colour"),
        ({"description": 42}, "description"),
        ([1, 2], None),
    ],
)
def test_a_bad_ruleset_is_422_naming_the_field_and_nothing_is_stored(http, content, field):
    name = team_name()
    answer = put(http, name, content)
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert answer.json()["detail"]
    assert http.get(f"/api/v1/rulesets/{name}").status_code == 404


def test_a_bad_name_is_422_and_a_file_defined_name_is_409(http):
    bad = put(http, "-leading-dash", {})
    assert bad.status_code == 422 and bad.json()["field"] == "name"
    owned = put(http, "default", {"unique_names": False})
    assert owned.status_code == 409
    assert owned.json()["detail"] == "ruleset 'default' is defined by rulesets/default.toml: edit the file"
    default = http.get("/api/v1/rulesets/default").json()
    assert default["source"] == "file:rulesets/default.toml"
    assert http.get("/api/v1/rulesets").json()["default"] == "default"


def test_unknown_names_and_versions_are_404(http):
    assert http.get("/api/v1/rulesets/nobody-here").json() == {"detail": "unknown ruleset 'nobody-here'"}
    assert http.get("/api/v1/rulesets/default/versions/9999").status_code == 404
    assert http.get("/api/v1/rulesets/default/versions/one").status_code == 422


def test_a_team_ruleset_passes_the_teams_names_that_the_default_rejects(http, worker, team_model):
    name = team_name()
    version = put(http, name, TEAM_RULES).json()

    under_team = upload(http, team_model, params={"ruleset": name})
    under_default = upload(http, team_model)
    assert under_team.status_code == under_default.status_code == 202
    assert under_team.json()["ruleset"] == {"name": name, "version": 1}
    assert under_default.json()["ruleset"]["name"] == "default"

    team_part = wait_finished(http, under_team.json()["part_id"])
    default_part = wait_finished(http, under_default.json()["part_id"])
    assert team_part["status"] == "validated", report_of(http, team_part["id"])["findings"]
    assert default_part["status"] == "rejected"
    team_report, default_report = report_of(http, team_part["id"]), report_of(http, default_part["id"])
    assert team_report["ruleset"] == ref(version)
    assert default_report["ruleset"] == ref(http.get("/api/v1/rulesets/default").json())
    assert team_report["rules"]["name_pattern"] == TEAM_RULES["name_pattern"]
    assert {f["code"] for f in default_report["findings"]} >= {"NAME_PATTERN"}


def test_the_multipart_field_ruleset_chooses_too(http, worker, team_model):
    name = team_name()
    put(http, name, TEAM_RULES)
    with team_model.open("rb") as handle:
        answer = http.post("/api/v1/parts", files={"file": ("team.3dm", handle)}, data={"ruleset": name})
    assert answer.status_code == 202 and answer.json()["ruleset"]["name"] == name
    assert wait_finished(http, answer.json()["part_id"])["status"] == "validated"


def test_the_version_is_fixed_when_the_part_is_submitted(http, worker, team_model):
    name, owner = team_name(), f"fixed-{uuid.uuid4().hex[:6]}"
    first = put(http, name, TEAM_RULES).json()
    http.post(f"/api/v1/agents/{owner}/pause")
    time.sleep(0.3)  # the worker hears the pause over pub/sub
    try:
        answer = upload(http, team_model, params={"ruleset": name}, data={"owner": owner})
        assert answer.json()["ruleset"] == {"name": name, "version": 1}
        second = put(http, name, {**TEAM_RULES, "description": "changed while the part waited"}).json()
        assert second["version"] == 2
        assert http.get(f"/api/v1/parts/{answer.json()['part_id']}").json()["status"] == "queued"
    finally:
        http.post(f"/api/v1/agents/{owner}/resume")
    wait_finished(http, answer.json()["part_id"])
    assert report_of(http, answer.json()["part_id"])["ruleset"] == ref(first)


def test_revalidate_keeps_the_parts_ruleset_unless_told_otherwise(http, worker, team_model):
    name = team_name()
    put(http, name, TEAM_RULES)
    part_id = upload(http, team_model, params={"ruleset": name}).json()["part_id"]
    assert wait_finished(http, part_id)["status"] == "validated"

    again = http.post(f"/api/v1/parts/{part_id}/revalidate")
    assert again.status_code == 202 and again.json()["ruleset"] == {"name": name, "version": 1}
    assert wait_finished(http, part_id)["status"] == "validated"

    other = http.post(f"/api/v1/parts/{part_id}/revalidate", params={"ruleset": "default"})
    assert other.json()["ruleset"]["name"] == "default"
    part = wait_finished(http, part_id)
    assert part["status"] == "rejected" and part["ruleset"]["name"] == "default"
    assert report_of(http, part_id)["ruleset"]["name"] == "default"

    unknown = http.post(f"/api/v1/parts/{part_id}/revalidate", params={"ruleset": "nobody-here"})
    assert unknown.status_code == 422
    assert unknown.json() == {"detail": "unknown ruleset 'nobody-here'", "field": "ruleset"}
    assert http.get(f"/api/v1/parts/{part_id}").json()["attempts"] == part["attempts"]


def test_an_old_message_without_a_ruleset_runs_the_latest_default(http, worker, celery, models):
    part_id = upload(http, models["valid_part"]).json()["part_id"]
    before = wait_finished(http, part_id)
    celery.send_task("librarian.validation.validate_file", args=[part_id]).get(timeout=60)
    after = wait_finished(http, part_id)
    assert after["attempts"] == before["attempts"] + 1 and after["status"] == "validated"
    assert report_of(http, part_id)["ruleset"] == ref(http.get("/api/v1/rulesets/default").json())


def stored_files() -> list[Path]:
    return sorted(p for p in settings.storage_dir.rglob("*") if p.is_file())


def count(model) -> int:
    with Session(get_engine()) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_an_unknown_ruleset_is_422_before_anything_is_stored(http, models):
    files_before, batches_before = stored_files(), count(Batch)
    marker = f"unknown-{uuid.uuid4().hex[:8]}.3dm"

    part = upload(http, models["valid_part"], name=marker, params={"ruleset": "nobody-here"})
    with models["valid_part"].open("rb") as handle:
        form = http.post("/api/v1/parts", files={"file": (marker, handle)}, data={"ruleset": "nobody-here"})
    batch = http.post(
        "/api/v1/batches",
        params={"ruleset": "nobody-here"},
        files=[("files", (marker, models["valid_part"].read_bytes()))],
    )
    for answer in (part, form, batch):
        assert answer.status_code == 422
        assert answer.json() == {"detail": "unknown ruleset 'nobody-here'", "field": "ruleset"}
    assert stored_files() == files_before
    assert count(Batch) == batches_before
    with Session(get_engine()) as session:
        assert session.exec(select(Part).where(Part.filename == marker)).all() == []
        assert session.exec(select(BatchItem).where(BatchItem.filename == marker)).all() == []


def test_a_batch_validates_every_item_with_its_ruleset(http, worker, team_model):
    name = team_name()
    version = put(http, name, TEAM_RULES).json()
    files = [("files", ("SF plan – C12 (ü).3dm", team_model.read_bytes()))]
    team = http.post("/api/v1/batches", params={"ruleset": name}, files=files)
    default = http.post("/api/v1/batches", files=files)
    assert team.json()["ruleset"] == {"name": name, "version": 1}
    assert http.get(f"/api/v1/batches/{team.json()['batch_id']}").json()["ruleset"] == {"name": name, "version": 1}
    statuses = {}
    for label, answer in (("team", team), ("default", default)):
        wait_batch_done(http, answer.json()["batch_id"])
        (item,) = batch_items(answer.json()["batch_id"])
        assert item.status == "published"
        part = http.get(f"/api/v1/parts/{item.part_id}").json()
        report = report_of(http, str(item.part_id))
        statuses[label] = (part["status"], report["ruleset"]["name"])
        assert part["filename"] == report["metadata"]["file_name"] == "SF plan – C12 (ü).3dm"
        if label == "team":
            assert report["ruleset"] == ref(version)
    assert statuses == {"team": ("validated", name), "default": ("rejected", "default")}


def start_api_expecting_failure(name: str, **env: str) -> tuple[int, str]:
    process = ManagedProcess(name, cli("api", "--port", str(free_port())), stack_env(**env), TMP / "logs")
    process.start()
    try:
        return process.process.wait(timeout=60), process.output()
    finally:
        process.stop()


def test_the_api_refuses_to_start_with_a_bad_ruleset_file(tmp_path):
    (tmp_path / "team-bad.toml").write_text("unique_names = 'sometimes'\n")
    status, output = start_api_expecting_failure("api-bad-ruleset", RULESETS_DIR=str(tmp_path))
    assert status != 0
    assert "rulesets unusable, not starting" in output
    assert f"{tmp_path / 'team-bad.toml'}: unique_names: must be true or false" in output
    assert '"field": "unique_names"' in output


def test_the_api_refuses_to_start_when_the_default_ruleset_does_not_exist(tmp_path):
    status, output = start_api_expecting_failure(
        "api-missing-default",
        RULESETS_DIR=str(tmp_path),
        DEFAULT_RULESET="nobody-here",
        DATABASE_URL=stack_database_url(tmp_path / "fresh.db"),
    )
    assert status != 0
    assert "DEFAULT_RULESET='nobody-here' is neither a file in" in output
