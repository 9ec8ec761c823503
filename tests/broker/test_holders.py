"""Message holders (app/broker/holders.py) against the real session Valkey: a message a dead worker
held goes back to its queue at once, and a worker that comes back cannot ack or restore it."""

from __future__ import annotations

import json

import pytest
import redis
from kombu import Connection, Exchange, Queue

from app.broker import holders, keys
from app.broker.recovery import Recovery, restore_dead_holders
from app.broker.transport import Transport

pytestmark = pytest.mark.integration

QUEUE = Queue("default", Exchange("default", type="direct"), routing_key="default")


@pytest.fixture
def broker_url(broker):
    url = broker.db_url(3)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def client(broker_url):
    return redis.Redis.from_url(broker_url, decode_responses=True)


@pytest.fixture
def worker(broker_url, monkeypatch):
    """A kombu connection as one worker incarnation uses it; `as_(name)` switches incarnation."""
    monkeypatch.setattr(holders, "_incarnation", None)
    with Connection(broker_url, transport=Transport, transport_options={"journal_queues": ("default",)}) as conn:
        yield conn


def as_(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holders, "_incarnation", name)


def publish(connection: Connection, n: str) -> None:
    connection.Producer(serializer="json").publish(
        {"n": n}, exchange=QUEUE.exchange, routing_key="default", declare=[QUEUE]
    )


def take(connection: Connection):
    received = []
    with connection.Consumer(QUEUE, callbacks=[lambda body, message: received.append(message)], accept=["json"]):
        connection.drain_events(timeout=5)
    return received[0]


def silence(client: redis.Redis, incarnation: str, seconds: float) -> None:
    """Make `incarnation`'s last beat `seconds` old by the server's clock."""
    now_s, now_us = client.time()
    client.zadd(keys.INCARNATIONS, {incarnation: now_s + now_us / 1e6 - seconds})


def test_a_taken_message_is_recorded_as_its_incarnations_until_acknowledged(worker, client, monkeypatch):
    as_("w1@host/1/aa", monkeypatch)
    publish(worker, "a")
    message = take(worker)
    tag = message.delivery_tag
    assert client.hget(keys.HOLDER, tag) == "w1@host/1/aa"
    assert client.smembers(keys.HELD.format(incarnation="w1@host/1/aa")) == {tag}
    assert client.zscore(keys.INCARNATIONS, "w1@host/1/aa") is not None, "first record beats for it"
    message.ack()
    assert client.hlen(keys.HOLDER) == 0 and client.scard(keys.HELD.format(incarnation="w1@host/1/aa")) == 0
    assert client.hlen("unacked") == 0 and client.hlen(keys.JOURNAL) == 0


def test_a_dead_incarnations_messages_go_back_to_the_tail_of_their_queue(worker, client, monkeypatch):
    as_("w1@host/1/aa", monkeypatch)
    publish(worker, "held")
    held = take(worker)
    publish(worker, "queued")
    as_("w2@host/2/bb", monkeypatch)
    channel = worker.default_channel

    assert restore_dead_holders(channel, dead_after=10) == {}, "w1 beat just now: alive"
    silence(client, "w1@host/1/aa", 11)
    restored = restore_dead_holders(channel, dead_after=10)
    assert list(restored) == ["w1@host/1/aa"] and len(restored["w1@host/1/aa"]) == 1
    assert client.hlen("unacked") == 0 and client.hlen(keys.HOLDER) == 0
    assert client.llen("default") == 2
    back = json.loads(client.lindex("default", -1))
    assert back["properties"]["delivery_tag"] == held.delivery_tag, "at the tail: taken next"
    assert back["headers"]["redelivered"] is True
    assert client.zscore(keys.INCARNATIONS, "w1@host/1/aa") is None, "retired once it holds nothing"

    again = take(worker)
    assert again.delivery_tag == held.delivery_tag and again.payload == {"n": "held"}
    assert client.hget(keys.HOLDER, held.delivery_tag) == "w2@host/2/bb"
    assert restore_dead_holders(channel, dead_after=10) == {}, "nothing is put back twice"


def test_a_frozen_worker_that_wakes_up_cannot_ack_what_was_taken_over(worker, client, monkeypatch):
    as_("w1@host/1/aa", monkeypatch)
    publish(worker, "x")
    frozen = take(worker)
    silence(client, "w1@host/1/aa", 30)
    as_("w2@host/2/bb", monkeypatch)
    restore_dead_holders(worker.default_channel, dead_after=10)
    taken_over = take(worker)  # w2 runs it
    assert client.hget(keys.HOLDER, taken_over.delivery_tag) == "w2@host/2/bb"

    as_("w1@host/1/aa", monkeypatch)  # w1 wakes up and finishes its copy
    frozen.ack()
    assert client.hexists("unacked", taken_over.delivery_tag), "w2's unacked entry is untouched"
    assert client.hexists(keys.JOURNAL, taken_over.delivery_tag), "and so is the journal entry w2's ack clears"

    as_("w2@host/2/bb", monkeypatch)
    taken_over.ack()
    assert client.hlen("unacked") == 0 and client.hlen(keys.JOURNAL) == 0 and client.hlen(keys.HOLDER) == 0


def test_a_frozen_worker_shutting_down_does_not_restore_what_was_taken_over(worker, broker_url, client, monkeypatch):
    as_("w1@host/1/aa", monkeypatch)
    publish(worker, "y")
    take(worker)
    silence(client, "w1@host/1/aa", 30)
    as_("w2@host/2/bb", monkeypatch)
    with Connection(broker_url, transport=Transport, transport_options={"journal_queues": ("default",)}) as other:
        restore_dead_holders(other.default_channel, dead_after=10)
        take(other)
        assert client.llen("default") == 0

        as_("w1@host/1/aa", monkeypatch)
        worker.default_channel.qos.restore_unacked()  # what w1's warm shutdown does
        assert client.llen("default") == 0, "the message w2 holds was not pushed back a second time"
        assert client.hget(keys.HOLDER, next(iter(client.hkeys("unacked")))) == "w2@host/2/bb"


def test_two_recoverers_never_put_the_same_message_back_twice(worker, client, monkeypatch):
    as_("w1@host/1/aa", monkeypatch)
    publish(worker, "z")
    message = take(worker)
    raw = client.hget("unacked", message.delivery_tag)
    targets = worker.default_channel.restore_targets(raw)
    moved = [
        holders.restore(
            client,
            incarnation_id="w1@host/1/aa",
            tag=message.delivery_tag,
            unacked="unacked",
            unacked_index="unacked_index",
            targets=targets,
        )
        for _ in range(2)
    ]
    assert moved == [True, False]
    assert client.llen("default") == 1


def test_a_message_acknowledged_before_the_sweep_is_not_put_back(worker, client, monkeypatch):
    as_("w1@host/1/aa", monkeypatch)
    publish(worker, "done")
    take(worker).ack()
    silence(client, "w1@host/1/aa", 30)
    as_("w2@host/2/bb", monkeypatch)
    assert restore_dead_holders(worker.default_channel, dead_after=10) == {}
    assert client.llen("default") == 0


def test_dead_is_judged_by_the_servers_clock(client):
    now_s, now_us = client.time()
    server_now = now_s + now_us / 1e6
    client.zadd(keys.INCARNATIONS, {"old/1/a": server_now - 20, "fresh/2/b": server_now - 1})
    cutoff, dead = holders.dead_incarnations(client, 10)
    assert dead == ["old/1/a"]
    assert abs(cutoff - (server_now - 10)) < 1


def test_a_sweeper_judges_no_one_dead_before_it_has_beaten_that_long_itself(worker, client, monkeypatch):
    """After a broker outage every last beat is old: the first worker back must not take the others
    for dead before they could beat again."""
    as_("w1@host/1/aa", monkeypatch)
    publish(worker, "running")
    take(worker)
    silence(client, "w1@host/1/aa", 30)
    as_("w2@host/2/bb", monkeypatch)
    sweeper = Recovery(app=None, grace=0, dead_after=10)  # its thread is not started: sweeps by hand
    sweeper.sweep(worker.default_channel)
    assert client.hlen("unacked") == 1 and client.llen("default") == 0, "w2 has beaten for 0 s: no verdict"
    sweeper._beating_since -= 11  # as if w2 had beaten without a gap for 11 s
    sweeper.sweep(worker.default_channel)
    assert client.hlen("unacked") == 0 and client.llen("default") == 1
