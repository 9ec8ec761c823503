"""Sentinel mode's settings: the sentinel:// URL parsed, refused when malformed, never quoted, and
turned into the options every Redis user (Celery, kombu, RedBeat, limits, redis-py) takes."""

from __future__ import annotations

import kombu
import pydantic
import pytest

from app.broker.transport import Connection, transport_for
from app.core.config import Settings, mask_url
from app.core.sentinel import SentinelURL, is_sentinel_url, parse_sentinel_url, transport_options
from app.worker.routing import base_config, redbeat_sentinel

URL = "sentinel://:s3cr3t-data@10.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://sentinel-c"


def sentinel_settings(**overrides: str) -> Settings:
    values = {
        "REDIS_URL": URL,
        "REDIS_SENTINEL_MASTER": "librarian",
        "REDIS_SENTINEL_PASSWORD": "s3cr3t-sentinel",
        **overrides,
    }
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


def test_every_sentinel_is_listed_with_the_data_password_and_database():
    parsed = parse_sentinel_url(URL)
    assert parsed == SentinelURL(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-c", 26379)),
        password="s3cr3t-data",
        db=2,
    )


@pytest.mark.parametrize(
    "url",
    [
        "sentinel://h1:26379",
        "SENTINEL://h1",
        "sentinel://user:pw@h1:1/0;sentinel://h2:2",
    ],
)
def test_sentinel_urls_are_recognised(url):
    assert is_sentinel_url(url)
    assert parse_sentinel_url(url).sentinels[0][0] == "h1"


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h", "", None])
def test_other_urls_are_not_sentinel_urls(url):
    assert not is_sentinel_url(url)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("sentinel://h1;redis://h2", "must start with sentinel://"),
        ("sentinel://h1:port", "not a number"),
        ("sentinel://:pw@:26379", "no host"),
        ("sentinel://h1/x", "database must be a number"),
        ("sentinel://h1/1;sentinel://h2/2", "a different database"),
        ("sentinel://:pw-one@h1;sentinel://:pw-two@h2", "a different password"),
        ("sentinel://h1;sentinel://h1", "listed twice"),
        (";", "no sentinel address"),
    ],
)
def test_malformed_urls_are_refused_without_quoting_them(url, error):
    with pytest.raises(ValueError, match=error) as caught:
        parse_sentinel_url(url)
    assert "pw-one" not in str(caught.value) and "pw-two" not in str(caught.value)


def test_settings_need_the_monitored_name():
    with pytest.raises(pydantic.ValidationError, match="REDIS_SENTINEL_MASTER"):
        sentinel_settings(REDIS_SENTINEL_MASTER="")
    assert sentinel_settings().redis_sentinel is not None
    assert Settings(REDIS_URL="redis://h:1/0", _env_file=None).redis_sentinel is None


def test_a_malformed_url_is_refused_at_start_up_without_the_password():
    with pytest.raises(pydantic.ValidationError) as caught:
        sentinel_settings(REDIS_URL="sentinel://:s3cr3t-data@h1:nope")
    assert "s3cr3t-data" not in str(caught.value)


def test_a_sentinel_url_is_masked_address_by_address():
    assert mask_url(URL) == "sentinel://:***@10.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://sentinel-c"


def test_the_sentinels_get_their_own_password_never_the_data_one():
    options = transport_options("librarian", "s3cr3t-sentinel", 2.0)
    assert options["master_name"] == "librarian"
    assert options["sentinel_kwargs"]["password"] == "s3cr3t-sentinel"
    assert transport_options("librarian", "", 2.0)["sentinel_kwargs"]["password"] is None


def test_celery_broker_and_result_backend_get_the_sentinel_options():
    config = base_config(sentinel_settings())
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["master_name"] == "librarian"
        assert options["sentinel_kwargs"]["password"] == "s3cr3t-sentinel"
    plain = base_config(Settings(REDIS_URL="redis://h:1/0", _env_file=None))
    assert "master_name" not in plain["broker_transport_options"]


def test_redbeat_asks_the_same_sentinels():
    options = redbeat_sentinel(sentinel_settings())
    assert options["redbeat_redis_url"] == "redis-sentinel://"
    redbeat = options["redbeat_redis_options"]
    assert redbeat["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-c", 26379)]
    assert (redbeat["service_name"], redbeat["password"], redbeat["db"]) == ("librarian", "s3cr3t-data", 2)
    assert redbeat_sentinel(Settings(REDIS_URL="redis://h:1/0", _env_file=None)) == {}


def test_the_publish_wait_is_checked():
    with pytest.raises(pydantic.ValidationError, match="REDIS_PUBLISH_WAIT"):
        Settings(REDIS_PUBLISH_WAIT_REPLICAS=-1, _env_file=None)
    assert Settings(_env_file=None).REDIS_PUBLISH_WAIT_REPLICAS == 0


def test_a_connection_failing_over_keeps_our_transport_and_credentials():
    url = "sentinel://:s3cr3t-data@10.0.0.1:26379/2;sentinel://10.0.0.2:26380"
    conn = Connection(url, transport=transport_for(url))
    conn.switch("sentinel://10.0.0.2:26380")
    assert (conn.transport_cls, conn.port, conn.password, conn.virtual_host) == (
        transport_for(url),
        26380,
        "s3cr3t-data",
        "2",
    )


def test_reconnects_start_after_one_second(monkeypatch):
    seen: dict[str, object] = {}
    monkeypatch.setattr(kombu.Connection, "ensure_connection", lambda self, *a, **kw: seen.update(kw))
    Connection("sentinel://h1:26379", transport=transport_for("sentinel://h1")).ensure_connection(None, 3)
    assert (seen["interval_start"], seen["interval_step"]) == (1, 1)


def test_inspect_stats_masks_the_sentinels_password():
    options = transport_options("librarian", "s3cr3t-sentinel", 2.0)
    conn = Connection("sentinel://h1:26379", transport=transport_for("sentinel://h1"), transport_options=options)
    assert "s3cr3t-sentinel" not in str(conn.info())
