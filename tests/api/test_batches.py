"""Batches through the six-stage pipeline with a real worker: statuses, counts, retry, idempotency."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration

MIX = {  # fixture → final item status
    "valid_part": "published",
    "bad_names": "published",  # published as a rejected part: validation findings are data, not failures
    "corrupt_bytes": "parse_failed",
    "not_3dm": "preprocess_failed",
    "truncated": "parse_failed",
}


def post_batch(http, paths, owner=None):
    files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    return http.post("/api/v1/batches", files=files, data={"owner": owner} if owner else None)


def wait_done(http, batch_id: str, timeout: float = 90) -> list[dict]:
    polls = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/api/v1/batches/{batch_id}").json()
        polls.append(body)
        if body["done"] == body["total"]:
            return polls
        time.sleep(0.2)
    raise AssertionError(f"batch never finished: {polls[-1]}")


def items_of(batch_id: str):
    import uuid

    from sqlmodel import Session, select

    from app.core.db import get_engine
    from app.models import BatchItem

    with Session(get_engine()) as session:
        rows = session.exec(select(BatchItem).where(BatchItem.batch_id == uuid.UUID(str(batch_id)))).all()
        return {i.filename: i for i in rows}


def test_mixed_batch_reaches_the_right_statuses_and_counts_always_add_up(http, worker, models):
    answer = post_batch(http, [models[name] for name in MIX])
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["batch_id"]
    default = http.get("/api/v1/rulesets/default").json()
    assert answer.json() == {
        "batch_id": batch_id,
        "total": 5,
        "queued": 5,
        "ruleset": {"name": "default", "version": default["version"]},
    }
    polls = wait_done(http, batch_id)
    for poll in polls:
        assert sum(poll["by_status"].values()) == 5, poll
    final = polls[-1]
    assert final["progress"] == "5/5" and final["percent"] == 100.0
    items = items_of(batch_id)
    assert {name: items[f"{name}.3dm"].status for name in MIX} == MIX
    failures = {f["filename"]: f for f in final["failures"]}
    assert set(failures) == {"corrupt_bytes.3dm", "not_3dm.3dm", "truncated.3dm"}
    assert failures["not_3dm.3dm"]["stage"] == "preprocess" and "header" in failures["not_3dm.3dm"]["error"]
    published = items["valid_part.3dm"]
    assert set(published.outputs) == {"preprocess", "parse", "classify", "extract", "validate", "publish"}
    part = http.get(f"/api/v1/parts/{published.part_id}").json()
    assert part["status"] == "validated"
    assert http.get(f"/api/v1/parts/{items['bad_names.3dm'].part_id}").json()["status"] == "rejected"


def test_retry_recovers_items_once_the_cause_is_fixed(http, worker, models):
    from app.core.storage import resolve_in_storage

    answer = post_batch(http, [models["valid_part"]])
    batch_id = answer.json()["batch_id"]
    wait_done(http, batch_id)
    (item,) = items_of(batch_id).values()
    assert item.status == "published"
    # Break it (the stored file disappears), rerun from the start: it fails after its retries...
    stored = resolve_in_storage(item.storage_key)
    content = stored.read_bytes()
    stored.unlink()
    from sqlmodel import Session

    from app.core.db import get_engine

    with Session(get_engine()) as session:
        row = session.get(type(item), item.id)
        row.status, row.failed_stage = "preprocess_failed", "preprocess"
        session.add(row)
        session.commit()
    assert http.post(f"/api/v1/batches/{batch_id}/retry").json()["retried"] == 1
    wait_done(http, batch_id, timeout=120)
    (item,) = items_of(batch_id).values()
    assert item.status == "preprocess_failed" and "missing" in item.error
    # ...then fix the cause and retry: it goes all the way.
    stored.write_bytes(content)
    assert http.post(f"/api/v1/batches/{batch_id}/retry").json()["retried"] == 1
    wait_done(http, batch_id)
    (item,) = items_of(batch_id).values()
    assert item.status == "published"


def test_running_a_stage_twice_leaves_the_same_rows(http, worker, models, celery):
    from sqlmodel import Session, func, select

    from app.core.db import get_engine
    from app.models import Part

    batch_id = post_batch(http, [models["valid_part"]]).json()["batch_id"]
    wait_done(http, batch_id)
    (item,) = items_of(batch_id).values()
    with Session(get_engine()) as session:
        parts_before = session.exec(select(func.count()).select_from(Part)).one()
    for stage in ("parse", "validate", "publish", "publish"):
        celery.send_task(f"librarian.pipeline.{stage}", args=[str(item.id)], queue="pipeline").get(timeout=30)
    (again,) = items_of(batch_id).values()
    with Session(get_engine()) as session:
        assert session.exec(select(func.count()).select_from(Part)).one() == parts_before
    assert again.status == "published" and again.part_id == item.part_id
    assert again.outputs["parse"] == item.outputs["parse"]


def test_too_many_items_is_422(api, broker):
    import httpx

    from tests.conftest import stack_env, start_api

    process, base = start_api("api-batch-limit", env=stack_env(MAX_ITEMS_PER_BATCH="3"))
    try:
        files = [("files", (f"f{i}.3dm", b"3D Geometry File Format x", "application/octet-stream")) for i in range(4)]
        answer = httpx.post(f"{base}/api/v1/batches", files=files, timeout=30)
        assert answer.status_code == 422
        assert "at most 3" in answer.json()["detail"]
    finally:
        process.stop()


def test_unknown_batch_is_404_and_empty_batch_422(http):
    import uuid

    assert http.get(f"/api/v1/batches/{uuid.uuid4()}").status_code == 404
    assert http.post(f"/api/v1/batches/{uuid.uuid4()}/retry").status_code == 404
    assert http.post("/api/v1/batches", files={"owner": (None, "x")}).status_code == 422


def stored_and_incoming() -> tuple[set, set, int]:
    """Files under storage/batches, files under storage/.incoming, and BatchItem rows."""
    from sqlmodel import Session, func, select

    from app.core.config import settings
    from app.core.db import get_engine
    from app.models import BatchItem

    root = settings.storage_dir
    with Session(get_engine()) as session:
        rows = session.exec(select(func.count()).select_from(BatchItem)).one()
    return ({p for p in (root / "batches").rglob("*") if p.is_file()}, set((root / ".incoming").glob("*")), rows)


def test_a_batch_with_a_file_not_named_3dm_is_415_naming_it_and_stores_nothing(http, models):
    before = stored_and_incoming()
    files = [
        ("files", ("good.3dm", models["valid_part"].read_bytes())),
        ("files", ("notes.txt", b"just text")),
        ("files", ("model.STEP", models["valid_part"].read_bytes())),
    ]
    answer = http.post("/api/v1/batches", files=files)
    assert answer.status_code == 415, answer.text
    detail = answer.json()["detail"]
    assert "'notes.txt'" in detail and "'model.STEP'" in detail and "good.3dm" not in detail
    assert stored_and_incoming() == before  # no stored file, no temp file left, no row


def test_a_batch_with_an_uppercase_3dm_extension_is_accepted(http, models):
    answer = http.post("/api/v1/batches", files=[("files", ("PLAN.3DM", models["valid_part"].read_bytes()))])
    assert answer.status_code == 202, answer.text


def test_a_paused_owners_batch_is_held_then_finishes_on_resume(http, worker, models):
    """A batch's messages carry the owner header: the brake holds it like any task of that user."""
    import uuid

    from tests.utils.processes import wait_until

    owner = f"frank-{uuid.uuid4().hex[:6]}"
    assert http.post(f"/api/v1/agents/{owner}/pause").json()["paused"] is True
    time.sleep(0.3)  # the worker hears the pause over pub/sub
    batch_id = post_batch(http, [models["valid_part"]], owner=owner).json()["batch_id"]
    wait_until(
        lambda: http.get(f"/api/v1/agents/{owner}").json()["held_tasks"] == 1,
        timeout=10,
        message="the batch's first stage was not held",
    )
    assert http.get(f"/api/v1/batches/{batch_id}").json()["by_status"] == {"queued": 1}
    assert http.post(f"/api/v1/agents/{owner}/resume").json()["released_tasks"] == 1
    assert wait_done(http, batch_id)[-1]["by_status"] == {"published": 1}


def test_publishing_stops_at_the_first_broker_error_and_retry_sends_the_rest(broker, monkeypatch):
    """Items sent before the error are `queued`, the rest stay `pending`; only the sent ids stay issued."""
    import uuid

    from kombu.exceptions import OperationalError
    from sqlmodel import Session

    from app import crud
    from app.api.routes.batches import publish_items
    from app.core.db import get_engine, init_db
    from app.core.errors import DependencyUnavailable
    from app.core.redis import get_redis
    from app.core.task_registry import KEY_PREFIX
    from app.models import BatchItem, ItemStatus
    from app.worker.celery_app import celery_app

    def third_fails(name, *args, task_id, **kwargs):  # stands in for the broker: nothing reaches a worker
        if len(sent) == 2:
            raise OperationalError("broker gone")
        sent.append(task_id)

    init_db()
    client = get_redis()
    sent: list[str] = []
    issued_before = set(client.scan_iter(f"{KEY_PREFIX}*"))
    monkeypatch.setattr(celery_app, "send_task", third_fails)
    with Session(get_engine()) as session:
        batch_id = uuid.uuid4()
        items = [
            BatchItem(
                batch_id=batch_id,
                filename=f"f{i}.3dm",
                storage_key=f"batches/{batch_id}/f{i}.3dm",
                status=ItemStatus.PENDING,
            )
            for i in range(5)
        ]
        crud.create_batch(
            session, batch_id=batch_id, owner=None, ruleset_name="default", ruleset_version=1, items=items
        )
        with pytest.raises(DependencyUnavailable):
            publish_items(session, celery_app, client, items, None)
        assert crud.count_items_by_status(session, batch_id=batch_id) == {ItemStatus.QUEUED: 2, ItemStatus.PENDING: 3}
        assert set(client.scan_iter(f"{KEY_PREFIX}*")) - issued_before == {f"{KEY_PREFIX}{t}" for t in sent}
        assert crud.list_items_to_send(session, batch_id=batch_id) == items[2:]


def test_a_batch_answers_503_within_two_seconds_when_the_broker_is_down(models):
    import httpx

    from tests.conftest import stack_env, start_api
    from tests.utils.processes import free_port

    dead = f"redis://:secret@127.0.0.1:{free_port()}/0"
    process, base = start_api("api-batch-no-broker", env=stack_env(REDIS_URL=dead))
    try:
        started = time.monotonic()
        files = [("files", ("a.3dm", models["valid_part"].read_bytes(), "application/octet-stream"))]
        answer = httpx.post(f"{base}/api/v1/batches", files=files, timeout=30)
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json()["dependency"] == "redis"
        assert elapsed < 2.0, f"took {elapsed:.2f}s"
    finally:
        process.stop()
