"""The JSON cache (app/core/cache.py) against the session Valkey: hit, miss, TTL expiry, a Redis outage."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from app.core.cache import PREFIX, cache_delete, cache_get, cache_set, report_key
from tests.utils.processes import free_port, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def client(broker):
    return broker.client()


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


def test_a_value_set_is_a_hit_until_deleted(client, key):
    value = {"summary": {"passed": True, "errors": 0}, "findings": [{"code": "UNITS", "n": 1.5}], "none": None}
    cache_set(client, key, value, ttl_seconds=60)
    assert cache_get(client, key) == value
    cache_delete(client, key)
    assert cache_get(client, key) is None


def test_a_key_never_set_is_a_miss(client, key):
    assert cache_get(client, key) is None


def test_a_value_is_stored_under_the_prefix_with_its_ttl(client, key):
    cache_set(client, key, [1, 2, 3], ttl_seconds=300)
    assert 290 < client.ttl(PREFIX + key) <= 300
    assert client.get(PREFIX + key) == b"[1, 2, 3]"


def test_a_value_expires_after_its_ttl(client, key):
    cache_set(client, key, "short-lived", ttl_seconds=1)
    assert cache_get(client, key) == "short-lived"
    started = time.monotonic()
    wait_until(lambda: cache_get(client, key) is None, timeout=5, interval=0.05, message="never expired")
    assert time.monotonic() - started < 3


def test_setting_again_replaces_the_value_and_its_ttl(client, key):
    cache_set(client, key, "first", ttl_seconds=1)
    cache_set(client, key, "second", ttl_seconds=120)
    time.sleep(1.2)
    assert cache_get(client, key) == "second"


def test_the_shared_pool_client_reads_what_a_raw_client_wrote(client, key):
    from app.core.redis import get_redis  # decode_responses=True: str values, where the raw client has bytes

    cache_set(client, key, {"a": "é"}, ttl_seconds=60)
    assert cache_get(get_redis(), key) == {"a": "é"}


def test_a_redis_outage_is_a_miss_not_an_error(key):
    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    cache_set(down, key, "lost", ttl_seconds=60)
    assert cache_get(down, key) is None
    cache_delete(down, key)


def test_report_keys_are_per_part():
    part_id = uuid.uuid4()
    assert report_key(part_id) == f"report:{part_id}" != report_key(uuid.uuid4())
