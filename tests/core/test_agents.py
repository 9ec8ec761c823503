"""Pause state, holding and release against the session Valkey: a message is held only while its
user is paused, so a resume can never strand one in the holding list."""

from __future__ import annotations

import json
import uuid

import pytest

from app.core import agents

pytestmark = pytest.mark.integration


@pytest.fixture
def client(broker):
    return broker.client()


def _message(queue: str, task_id: str) -> dict:
    return {"headers": {"id": task_id}, "properties": {"delivery_info": {"routing_key": queue}}, "body": ""}


def test_a_paused_users_message_is_held_and_resume_puts_it_back_on_its_queue(client):
    user, queue, task_id = f"u-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    agents.pause(client, user)
    assert agents.hold_message(client, user, _message(queue, task_id)) is True
    assert agents.held_count(client, user) == 1
    assert agents.held_for(client, task_id) == user
    assert agents.resume(client, user) == 1
    assert agents.held_count(client, user) == 0 and agents.held_for(client, task_id) is None
    assert json.loads(client.lpop(queue))["headers"]["id"] == task_id


def test_a_message_that_arrives_after_the_resume_is_not_held(client):
    """The worker's in-memory set learns of a resume over pub/sub, which may come after the
    released message: the hold itself asks Redis, and refuses."""
    user, queue, task_id = f"u-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    agents.pause(client, user)
    agents.resume(client, user)
    assert agents.hold_message(client, user, _message(queue, task_id)) is False
    assert agents.held_count(client, user) == 0
    assert not client.exists(agents.HELD_TASK_KEY.format(task_id=task_id))
