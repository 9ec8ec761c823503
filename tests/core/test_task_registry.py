"""The issued-id registry against the session Valkey: records, finish marks, TTLs, older records."""

from __future__ import annotations

import uuid

import pytest

from app.core.config import settings
from app.core.task_registry import KEY_PREFIX, Issued, forget_issued, issued, mark_finished, record_issued

pytestmark = pytest.mark.integration


@pytest.fixture
def client(broker):
    return broker.client()


def test_an_issued_id_is_kept_issued_task_ttl_not_result_expires(client):
    task_id = str(uuid.uuid4())
    record_issued(client, task_id, "librarian.demo.process")
    assert issued(client, task_id) == Issued("librarian.demo.process", finished=False)
    assert settings.RESULT_EXPIRES < client.ttl(KEY_PREFIX + task_id) <= settings.ISSUED_TASK_TTL


def test_marking_finished_keeps_the_name_and_restarts_the_ttl(client):
    task_id = str(uuid.uuid4())
    record_issued(client, task_id, "librarian.validation.validate_file")
    client.expire(KEY_PREFIX + task_id, 60)
    assert mark_finished(client, task_id) is True
    assert issued(client, task_id) == Issued("librarian.validation.validate_file", finished=True)
    assert client.ttl(KEY_PREFIX + task_id) > settings.ISSUED_TASK_TTL - 60


def test_an_id_never_issued_is_unknown_and_marking_it_writes_nothing(client):
    task_id = str(uuid.uuid4())
    assert issued(client, task_id) is None
    assert mark_finished(client, task_id) is False
    assert not client.exists(KEY_PREFIX + task_id)


def test_a_forgotten_id_is_unknown(client):
    task_id = str(uuid.uuid4())
    record_issued(client, task_id, "librarian.demo.process")
    forget_issued(client, task_id)
    assert issued(client, task_id) is None


def test_a_record_of_the_older_layout_still_answers(client):
    """Before the hash, a record was the task name as a plain string (with RESULT_EXPIRES)."""
    task_id = str(uuid.uuid4())
    client.set(KEY_PREFIX + task_id, "librarian.demo.process", ex=60)
    assert issued(client, task_id) == Issued("librarian.demo.process", finished=False)
    assert mark_finished(client, task_id) is False  # left as it was: it expires with its result
    assert client.get(KEY_PREFIX + task_id) == b"librarian.demo.process"


def test_records_written_on_a_pipeline_and_read_through_the_shared_pool(client):
    from app.core.redis import get_redis  # decode_responses=True: str, where the raw client answers bytes

    ids = [str(uuid.uuid4()) for _ in range(3)]
    with client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            record_issued(pipe, task_id, "librarian.pipeline.preprocess")
        pipe.execute()
    assert {issued(get_redis(), t) for t in ids} == {Issued("librarian.pipeline.preprocess", finished=False)}
