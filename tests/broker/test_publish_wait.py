"""Acknowledged means kept (REDIS_PUBLISH_WAIT_REPLICAS): the publish waits for replicas with WAIT on
its own connection, and a publish no replica confirmed is refused (503), against the real session
Valkey, which has no replica: WAIT 1 returns 0 once its timeout has passed."""

from __future__ import annotations

import time

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Queue

from app.api.submit import submit
from app.broker import keys
from app.broker.transport import NotReplicated, Transport
from app.core.errors import DependencyUnavailable

pytestmark = pytest.mark.integration

QUEUE = Queue("default", Exchange("default", type="direct"), routing_key="default")


@pytest.fixture
def broker_url(broker):
    return broker.db_url(3)


def connection(url: str, replicas: int) -> Connection:
    options = {"journal_queues": ("default",), "publish_wait_replicas": replicas, "publish_wait_ms": 50}
    return Connection(url, transport=Transport, transport_options=options)


def test_a_publish_no_replica_confirmed_is_refused_but_stays_queued(broker_url):
    client = redis.Redis.from_url(broker_url)
    with connection(broker_url, 1) as conn:
        producer = conn.Producer(serializer="json")
        started = time.monotonic()
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            producer.publish({"n": 1}, exchange=QUEUE.exchange, routing_key="default", declare=[QUEUE])
        assert 0.04 < time.monotonic() - started < 1.5, "WAIT waits its timeout, no longer"
    assert client.llen("default") == 1 and client.hlen(keys.JOURNAL) == 1, "queued on the primary and journaled"


def test_without_the_wait_nothing_changes(broker_url):
    client = redis.Redis.from_url(broker_url)
    with connection(broker_url, 0) as conn:
        conn.Producer(serializer="json").publish(
            {"n": 1}, exchange=QUEUE.exchange, routing_key="default", declare=[QUEUE]
        )
    assert client.llen("default") == 1


def test_the_api_answers_503_and_keeps_the_id_issued(broker_url, celery):
    app = Celery("wait-test", set_as_current=False)
    app.conf.update(celery.conf.table(with_defaults=False, censored=False))
    app.conf.update(broker_url=broker_url, result_backend=broker_url)
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "publish_wait_replicas": 1,
        "publish_wait_ms": 50,
    }
    client = redis.Redis.from_url(broker_url, decode_responses=True)
    with pytest.raises(DependencyUnavailable) as caught:
        submit(app, client, "librarian.demo.process", kwargs={"message": "m", "steps": 1}, task_id="wait-1")
    assert (caught.value.dependency, caught.value.reason) == ("redis", "NotReplicated")
    assert client.exists(f"{keys.ISSUED_PREFIX}wait-1"), "the message runs unless a failover loses it: its id answers"
    assert client.llen("default") == 1
