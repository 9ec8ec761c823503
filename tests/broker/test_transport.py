"""The publish journal (app/broker/journal.py) and the transport that writes it, against the real
session Valkey.

A worker killed between kombu's BRPOP and its `unacked` write is simulated by popping the message
off the queue by hand: the message is then in no queue and not in `unacked`, exactly as such a
worker leaves it.
"""

from __future__ import annotations

import json
import time

import pytest
import redis
from kombu import Connection, Exchange, Queue

from app.broker import journal, keys
from app.broker.transport import Transport

JOURNAL_KEY = keys.JOURNAL
INDEX = f"{keys.JOURNAL_INDEX_PREFIX}default"
NAMES = journal.JournalKeys()

pytestmark = pytest.mark.integration

QUEUE = Queue("default", Exchange("default", type="direct"), routing_key="default")


@pytest.fixture
def broker_url(broker):
    return broker.db_url(2)


@pytest.fixture
def connection(broker_url):
    with Connection(broker_url, transport=Transport, transport_options={"journal_queues": ("default",)}) as conn:
        yield conn


@pytest.fixture
def client(broker_url):
    return redis.Redis.from_url(broker_url, decode_responses=True)


def publish(connection: Connection, body: dict) -> str:
    producer = connection.Producer(serializer="json")
    producer.publish(body, exchange=QUEUE.exchange, routing_key="default", declare=[QUEUE])
    return body["n"]


def missing(client: redis.Redis) -> list[str]:
    return journal.missing(client, NAMES, unacked="unacked", queue_keys=["default"])


def recover(client: redis.Redis, grace: float) -> list[str]:
    return journal.recover_lost(client, NAMES, unacked="unacked", queue_keys=["default"], grace=grace)


def take(connection: Connection, *, ack: bool) -> dict:
    """Receive one message the way a worker does (into `unacked`), acknowledging it or not."""
    received = []

    def on_message(body, message):
        received.append((body, message))

    with connection.Consumer(QUEUE, callbacks=[on_message], accept=["json"]):
        connection.drain_events(timeout=5)
    body, message = received[0]
    if ack:
        message.ack()
    return body


def test_a_published_task_message_is_journaled_until_acknowledged(connection, client):
    publish(connection, {"n": "a"})
    assert client.hlen(JOURNAL_KEY) == 1 and client.zcard(INDEX) == 1
    key, payload = json.loads(next(iter(client.hvals(JOURNAL_KEY))))
    assert key == "default" and payload == client.lindex("default", 0), "the journal keeps the message as pushed"

    take(connection, ack=True)
    assert client.hlen(JOURNAL_KEY) == 0 and client.zcard(INDEX) == 0
    assert client.hlen("unacked") == 0


def test_a_rejected_message_leaves_the_journal_and_a_requeued_one_stays(connection, client):
    publish(connection, {"n": "r"})
    received = []
    with connection.Consumer(QUEUE, callbacks=[lambda b, m: received.append(m)], accept=["json"]):
        connection.drain_events(timeout=5)
    received[0].requeue()
    assert client.hlen(JOURNAL_KEY) == 1 and client.llen("default") == 1, "requeued: still journaled, queued again"

    received.clear()
    with connection.Consumer(QUEUE, callbacks=[lambda b, m: received.append(m)], accept=["json"]):
        connection.drain_events(timeout=5)
    received[0].reject()
    assert client.hlen(JOURNAL_KEY) == 0 and client.hlen("unacked") == 0


def test_queues_outside_the_journal_list_are_not_journaled(broker_url, client):
    other = Queue("celery.reply", Exchange("celery.reply", type="direct"), routing_key="celery.reply")
    with Connection(broker_url, transport=Transport, transport_options={"journal_queues": ("default",)}) as conn:
        conn.Producer(serializer="json").publish(
            {"n": 1}, exchange=other.exchange, routing_key="celery.reply", declare=[other]
        )
    assert client.llen("celery.reply") == 1 and client.hlen(JOURNAL_KEY) == 0


def test_a_message_lost_between_pop_and_unacked_is_republished_after_the_grace(connection, client):
    publish(connection, {"n": "lost"})
    publish(connection, {"n": "queued"})
    publish(connection, {"n": "in-flight"})
    lost = client.rpop("default")  # what a worker killed right after its BRPOP takes with it
    assert missing(client) == [json.loads(lost)["properties"]["delivery_tag"]]

    assert recover(client, 0.5) == [], "first sighting: only noted, a worker may be mid-write"
    time.sleep(0.6)
    republished = recover(client, 0.5)
    assert len(republished) == 1
    assert client.lindex("default", -1) == lost, "republished as it was, at the tail: taken next"
    assert client.llen("default") == 3  # nothing else was pushed again
    assert missing(client) == []

    # The two others are accounted for and never republished: one queued, one taken into `unacked`.
    assert take(connection, ack=True) == {"n": "lost"}
    take(connection, ack=False)  # "queued", left in flight
    assert recover(client, 0.0) == []
    assert recover(client, 0.0) == []
    assert client.llen("default") == 1 and client.hlen("unacked") == 1


def test_a_message_that_reappears_before_the_grace_is_not_republished(connection, client):
    publish(connection, {"n": "window"})
    popped = client.rpop("default")
    assert recover(client, 0.5) == []
    client.rpush("default", popped)  # the worker was alive after all: the message is back where it was
    time.sleep(0.6)
    assert recover(client, 0.5) == []
    assert client.llen("default") == 1
    assert client.hlen("librarian:journal:suspects") == 0


def test_messages_kombu_restores_to_the_tail_are_never_taken_for_lost(connection, client):
    """kombu pushes unacknowledged messages of a dead or stopping worker back at the tail, in any
    order: the queue then holds old messages behind the tail, which must not look taken."""
    for n in range(4):
        publish(connection, {"n": str(n)})
    received = []
    with connection.Consumer(QUEUE, callbacks=[lambda b, m: received.append(m)], accept=["json"]):
        connection.drain_events(timeout=5)
        connection.drain_events(timeout=5)
    assert client.llen("default") == 2 and client.hlen("unacked") == 2
    channel = connection.default_channel
    channel.qos.restore_unacked()  # what a warm shutdown does: both back at the tail
    assert client.llen("default") == 4 and client.hlen("unacked") == 0
    for _ in range(3):
        assert missing(client) == []
        assert recover(client, 0.0) == []
    assert client.llen("default") == 4


def test_purging_a_queue_forgets_its_journal_entries(connection, client):
    for n in range(3):
        publish(connection, {"n": str(n)})
    assert connection.default_channel.queue_purge("default") == 3
    assert client.hlen(JOURNAL_KEY) == 0 and client.zcard(INDEX) == 0


def test_a_channel_reuses_one_redis_client_until_its_pool_is_replaced(connection):
    channel = connection.default_channel
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second
        assert first.connection_pool is channel.pool
        assert first.ping()
    assert channel._create_client(asynchronous=True) is not first  # BRPOP's client stays kombu's own
    old_pool, channel._pool = channel._pool, None  # what kombu does when it drops the pool
    old_pool.disconnect()
    with channel.conn_or_acquire() as third:
        assert third is not first
        assert third.connection_pool is channel.pool
        assert third.ping()
