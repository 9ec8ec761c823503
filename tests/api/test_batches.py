"""Batches through the six-stage pipeline with a real worker: statuses, counts, retry, idempotency.

This module runs its own API and worker on Redis database 5 (no other worker takes its tasks) with
retries of 1-2 s instead of minutes (docs/runbook.md, "How long work survives an outage"); they
share the session's database and storage.
"""

from __future__ import annotations

import json
import re
import secrets
import time

import httpx
import pytest

from tests.conftest import stack_env, start_api, start_worker

pytestmark = pytest.mark.integration

REDIS_DB = 5
FAST_RETRIES = {"TASK_RETRY_DELAY": "1", "PIPELINE_RETRY_BACKOFF": "1", "PIPELINE_RETRY_BACKOFF_MAX": "2"}
BATCH_STATES = {"queued", "running", "completed", "completed_with_failures"}


@pytest.fixture(scope="module")
def env(broker):
    return stack_env(REDIS_URL=broker.db_url(REDIS_DB), **FAST_RETRIES)


@pytest.fixture(scope="module")
def worker(env):
    process = start_worker(f"batches{secrets.token_hex(3)}", env=env)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api(env):
    process, base = start_api("api-batches", env=env)
    process.base_url = base
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def http(api):
    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def celery(env):
    """A producer on this module's broker database, configured like Librarian's app."""
    from celery import Celery

    from app.worker.celery_app import celery_app

    producer = Celery("batches-producer", set_as_current=False)
    producer.conf.update(celery_app.conf.table(with_defaults=False))
    producer.conf.update(broker_url=env["REDIS_URL"], result_backend=env["REDIS_URL"])
    try:
        yield producer
    finally:
        producer.close()


def worker_events(worker, event: str, after: int = 0) -> list[dict]:
    """The worker's JSON log lines for `event`, from character `after` of its output on."""
    lines = []
    for line in worker.output()[after:].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            lines.append(record)
    return lines


def check_totals(body: dict) -> None:
    """What every batch answer must hold, whenever it is read."""
    assert body["status"] in BATCH_STATES, body
    assert body["completed"] + body["failed"] + body["in_progress"] == body["total"], body
    assert body["done"] == body["completed"] + body["failed"], body
    assert sum(body["by_status"].values()) == body["total"], body
    assert body["completed"] == body["by_status"].get("published", 0), body


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
        check_totals(body)
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
    mark = len(worker.output())
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
    assert (final["status"], final["completed"], final["failed"], final["in_progress"]) == (
        "completed_with_failures",
        2,
        3,
        0,
    )
    assert {p["status"] for p in polls} <= {"queued", "running", "completed_with_failures"}
    assert http.get(f"/api/v1/batches/{batch_id}/status").json() == final
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
    # One "item dead-lettered" line per failed item: bad input, so a warning, not retried.
    dead = {r["item_id"]: r for r in worker_events(worker, "item dead-lettered", mark)}
    failed_ids = {str(items[name].id): name for name in failures}
    assert set(dead) == set(failed_ids)
    not_3dm = dead[str(items["not_3dm.3dm"].id)]
    assert not_3dm["batch_id"] == batch_id and not_3dm["stage"] == "preprocess"
    assert not_3dm["level"] == "warning" and not_3dm["reason"] == "rejected"
    assert (not_3dm["error"], not_3dm["error_message"]) == ("StageRejected", "not a Rhino .3dm file (bad header)")
    assert {dead[i]["stage"] for i in failed_ids if i != not_3dm["item_id"]} == {"parse"}


def test_in_progress_stage_states_are_set_when_a_stage_starts(http, worker, models):
    """Each stage writes its running status (`parsing`, ...) when it starts, then its done status."""
    from tests.utils.processes import wait_until

    batch_id = post_batch(http, [models["valid_part"]]).json()["batch_id"]
    wait_done(http, batch_id)
    (item,) = items_of(batch_id).values()
    set_status(item, "parse_failed", "parse")
    seen: list[str] = []

    def published_again() -> bool:  # the item's status at each change, read as often as we can
        status = items_of(batch_id)[item.filename].status
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == "published"

    assert http.post(f"/api/v1/batches/{batch_id}/retry").json()["retried"] == 1
    wait_until(published_again, timeout=60, interval=0.005, message=f"never published again: {seen}")
    order = ["queued", "parsing", "parsed", "classifying", "classified", "extracting", "extracted"]
    order += ["validating", "validated", "publishing", "published"]
    assert set(seen) <= set(order) and seen == sorted(seen, key=order.index), seen
    assert {"parsing", "classifying", "extracting", "validating", "publishing"} & set(seen), seen


def set_status(item, status: str, stage: str) -> None:
    """Put an item in a dead-letter state by hand, as if `stage` had failed."""
    from sqlmodel import Session

    from app.core.db import get_engine

    with Session(get_engine()) as session:
        row = session.get(type(item), item.id)
        row.status, row.failed_stage = status, stage
        session.add(row)
        session.commit()


RETRY_IN = re.compile(r"^Retry in ([0-9.]+)s: FileNotFoundError")


def test_a_stage_that_fails_transiently_retries_with_growing_waits_then_is_dead_lettered_and_retry_recovers_it(
    http, worker, models
):
    """Retries at PIPELINE_RETRY_BACKOFF=1 doubling to PIPELINE_RETRY_BACKOFF_MAX=2 (each cut by up to
    half): nominal 1, 2, 2 s. Meanwhile the item stays `preprocessing` and the batch `running`."""
    from app.core.storage import resolve_in_storage

    answer = post_batch(http, [models["valid_part"]])
    batch_id = answer.json()["batch_id"]
    wait_done(http, batch_id)
    (item,) = items_of(batch_id).values()
    assert item.status == "published"
    assert http.get(f"/api/v1/batches/{batch_id}/status").json()["status"] == "completed"
    # Break it (the stored file disappears: an OSError, retried), rerun from the start...
    stored = resolve_in_storage(item.storage_key)
    content = stored.read_bytes()
    stored.unlink()
    set_status(item, "preprocess_failed", "preprocess")
    mark = len(worker.output())
    started = time.monotonic()
    assert http.post(f"/api/v1/batches/{batch_id}/retry").json()["retried"] == 1
    worker.wait_for(r'"event": "task retried"', timeout=30, after=mark)
    waiting = http.get(f"/api/v1/batches/{batch_id}/status").json()
    assert waiting["by_status"] == {"preprocessing": 1}, waiting
    assert (waiting["status"], waiting["in_progress"], waiting["completed"], waiting["failed"]) == ("running", 1, 0, 0)
    # ...it fails after its retries: dead-lettered, one line saying so.
    polls = wait_done(http, batch_id, timeout=60)
    elapsed = time.monotonic() - started
    (item,) = items_of(batch_id).values()
    assert item.status == "preprocess_failed" and "missing" in item.error
    final = polls[-1]
    assert (final["status"], final["failed"], final["in_progress"]) == ("completed_with_failures", 1, 0)
    retried = [r for r in worker_events(worker, "task retried", mark) if r["task_name"].endswith(".preprocess")]
    waits = [float(RETRY_IN.match(r["reason"]).group(1)) for r in retried]
    assert [r["retries"] for r in retried] == [0, 1, 2]
    for wait, nominal in zip(waits, [1, 2, 2], strict=True):  # doubling, capped at the maximum
        assert nominal / 2 - 0.05 <= wait <= nominal, waits
    assert elapsed >= sum(waits)
    (dead,) = worker_events(worker, "item dead-lettered", mark)
    assert dead["level"] == "error" and dead["reason"] == "retries exhausted"
    assert (dead["item_id"], dead["batch_id"], dead["stage"]) == (str(item.id), batch_id, "preprocess")
    assert dead["error"] == "FileNotFoundError" and "missing" in dead["error_message"]
    # Fix the cause and retry: it goes all the way.
    stored.write_bytes(content)
    assert http.post(f"/api/v1/batches/{batch_id}/retry").json()["retried"] == 1
    assert wait_done(http, batch_id)[-1]["status"] == "completed"
    (item,) = items_of(batch_id).values()
    assert item.status == "published"


def test_a_stage_recovers_when_the_cause_goes_away_during_its_retries(http, worker, models):
    from app.core.storage import resolve_in_storage

    batch_id = post_batch(http, [models["valid_part"]]).json()["batch_id"]
    wait_done(http, batch_id)
    (item,) = items_of(batch_id).values()
    stored = resolve_in_storage(item.storage_key)
    content = stored.read_bytes()
    stored.unlink()
    set_status(item, "parse_failed", "parse")
    mark = len(worker.output())
    assert http.post(f"/api/v1/batches/{batch_id}/retry").json()["retried"] == 1
    worker.wait_for(r'"event": "task retried"', timeout=30, after=mark)
    stored.write_bytes(content)  # storage is back before the retries run out
    assert wait_done(http, batch_id)[-1]["status"] == "completed"
    assert items_of(batch_id)[item.filename].status == "published"
    assert worker_events(worker, "item dead-lettered", mark) == []


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
    assert http.get(f"/api/v1/batches/{uuid.uuid4()}/status").status_code == 404
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
    held = http.get(f"/api/v1/batches/{batch_id}").json()
    assert held["by_status"] == {"queued": 1}
    assert (held["status"], held["in_progress"], held["done"]) == ("queued", 1, 0)
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
