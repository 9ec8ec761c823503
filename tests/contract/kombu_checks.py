"""What app/broker/ (and the pause brake's release script) assume about kombu, one check per id.

Behaviour is checked where it can be without a broker: a recording pipe stands in for redis-py and
kombu's in-memory transport for a broker. Signatures are checked where only a call is relied on.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import kombu
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from app.broker import transport as ours

FIX = "update app/broker/ to match (and this check), or pin kombu below this version"


class RecordingPipe:
    """Records the redis commands queued on it; every command returns the pipe (redis-py chaining)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., RecordingPipe]:
        def command(*args: Any, **_: Any) -> RecordingPipe:
            self.calls.append((name, args))
            return self

        return command

    def __enter__(self) -> RecordingPipe:
        return self

    def __exit__(self, *_: Any) -> None:
        return None


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def expect_params(owner: type, name: str, expected: list[str]) -> None:
    function = getattr(owner, name, None)
    assert function is not None, f"{owner.__module__}.{owner.__qualname__}.{name} is gone; {FIX}"
    assert params(function) == expected, (
        f"{owner.__qualname__}.{name}{inspect.signature(function)} no longer takes {expected}; {FIX}"
    )


def stock_qos(pipe: RecordingPipe) -> kombu_redis.QoS:
    """kombu's own Redis QoS on a stand-in channel whose pipeline records."""
    channel = SimpleNamespace(
        do_restore=False,
        unacked_key="unacked",
        unacked_index_key="unacked_index",
        unacked_mutex_key="m",
        unacked_mutex_expire=300,
        visibility_timeout=3600,
    )
    qos = kombu_redis.QoS(channel)
    qos.pipe_or_acquire = lambda pipe_=None, client=None: pipe  # type: ignore[method-assign]
    return qos


def fake_message(tag: str) -> SimpleNamespace:
    raw = {"body": "e30=", "headers": {"id": tag}, "properties": {"delivery_tag": tag}}
    return SimpleNamespace(_raw=raw, delivery_info={"exchange": "default", "routing_key": "default"})


def check_qos_delivered() -> None:
    qos = virtual.QoS(SimpleNamespace(do_restore=False))  # no restore at exit: a stand-in channel
    assert hasattr(qos, "_delivered"), f"virtual.QoS no longer keeps `_delivered`; {FIX}"
    qos.append(fake_message("t1"), "t1")
    assert list(qos._delivered) == ["t1"], f"virtual.QoS._delivered is no longer a mapping of tags; {FIX}"


def check_qos_append() -> None:
    """Our append replaces kombu's: kombu's must still write exactly `unacked` and `unacked_index`."""
    expect_params(kombu_redis.QoS, "append", ["self", "message", "delivery_tag"])
    pipe = RecordingPipe()
    stock_qos(pipe).append(fake_message("t1"), "t1")
    names = [(name, args[0]) for name, args in pipe.calls if name != "execute"]
    assert names == [("zadd", "unacked_index"), ("hset", "unacked")], (
        f"kombu's QoS.append now writes {names}, not only the unacked index and hash that "
        f"JournalQoS.append reproduces; {FIX}"
    )


def check_unacked_layout() -> None:
    """`unacked`: tag -> JSON [message as received, exchange, routing key]; `unacked_index`: tag -> time."""
    pipe = RecordingPipe()
    message = fake_message("t1")
    stock_qos(pipe).append(message, "t1")
    hset = next(args for name, args in pipe.calls if name == "hset")
    assert hset[1] == "t1" and json.loads(hset[2]) == [message._raw, "default", "default"], (
        f"kombu's `unacked` entry is now {hset[2]!r}; the scripts in app/broker/ read [message, exchange, "
        f"routing key]; {FIX}"
    )
    zadd = next(args for name, args in pipe.calls if name == "zadd")
    assert isinstance(zadd[1], dict) and list(zadd[1]) == ["t1"], f"kombu's unacked index entry changed: {zadd}; {FIX}"
    assert "M, EX, RK = loads(" in inspect.getsource(kombu_redis.QoS.restore_by_tag), (
        f"kombu's restore_by_tag no longer reads `unacked` entries as [message, exchange, routing key]; {FIX}"
    )


def check_remove_from_indices() -> None:
    expect_params(kombu_redis.QoS, "_remove_from_indices", ["self", "delivery_tag", "pipe"])
    pipe = RecordingPipe()
    returned = stock_qos(pipe)._remove_from_indices("t1", pipe)
    assert returned is pipe, f"kombu's _remove_from_indices no longer returns the pipe to chain on; {FIX}"
    assert pipe.calls == [("zrem", ("unacked_index", "t1")), ("hdel", ("unacked", "t1"))], (
        f"kombu's _remove_from_indices now queues {pipe.calls}; {FIX}"
    )
    for caller in ("restore_by_tag", "reject", "ack"):
        assert "_remove_from_indices" in inspect.getsource(getattr(kombu_redis.QoS, caller)), (
            f"kombu's QoS.{caller} no longer clears `unacked` through _remove_from_indices, so holders "
            f"would outlive their entries; {FIX}"
        )


def check_restore_unacked() -> None:
    expect_params(kombu_redis.QoS, "restore_unacked", ["self", "client"])
    source = inspect.getsource(kombu_redis.QoS.restore_unacked)
    assert "self._delivered" in source and "restore_by_tag" in source, (
        f"kombu's restore_unacked no longer restores each tag of `_delivered` by restore_by_tag, which "
        f"JournalQoS.restore_unacked filters first; {FIX}"
    )


def check_put() -> None:
    expect_params(kombu_redis.Channel, "_put", ["self", "queue", "message", "kwargs"])
    assert "_put(" in inspect.getsource(virtual.Channel.basic_publish), (
        f"kombu's basic_publish no longer publishes through Channel._put, where the journal is written; {FIX}"
    )


def check_q_for_pri() -> None:
    expect_params(kombu_redis.Channel, "_q_for_pri", ["self", "queue", "pri"])
    channel = SimpleNamespace(sep="\x06\x16", priority=lambda pri: pri)
    assert kombu_redis.Channel._q_for_pri(channel, "default", 0) == "default", (
        f"kombu no longer keeps priority 0 of a queue in a list named after the queue; {FIX}"
    )


def check_get_message_priority() -> None:
    expect_params(virtual.Channel, "_get_message_priority", ["self", "message", "reverse"])


def check_do_restore_message() -> None:
    """Our restore_targets must push what kombu's own restore pushes (marked redelivered)."""
    expect_params(
        kombu_redis.Channel, "_do_restore_message", ["self", "payload", "exchange", "routing_key", "pipe", "leftmost"]
    )
    message = {
        "body": "e30=",
        "headers": {"id": "x"},
        "properties": {"delivery_tag": "t1", "delivery_info": {"exchange": "default", "routing_key": "default"}},
    }
    stand_in = SimpleNamespace(
        _lookup=lambda exchange, routing_key: ["default"],
        sep="\x06\x16",
        priority=lambda pri: pri,
        _get_message_priority=lambda m, reverse=False: 0,
    )
    stand_in._q_for_pri = lambda queue, pri: kombu_redis.Channel._q_for_pri(stand_in, queue, pri)
    stand_in.queue_key = lambda queue, pri: ours.JournalChannelMixin.queue_key(stand_in, queue, pri)  # type: ignore[arg-type]
    pipe = RecordingPipe()
    kombu_redis.Channel._do_restore_message(stand_in, json.loads(json.dumps(message)), "default", "default", pipe)
    pushed = [(name, args[0], json.loads(args[1])) for name, args in pipe.calls]
    raw = json.dumps([message, "default", "default"])
    targets = ours.JournalChannelMixin.restore_targets(stand_in, raw)  # type: ignore[arg-type]
    ours_pushed = [("rpush", key, json.loads(payload)) for key, payload in targets]
    assert pushed == ours_pushed, f"kombu's restore now pushes {pushed}, the dead-holder restore {ours_pushed}; {FIX}"


def check_purge() -> None:
    expect_params(kombu_redis.Channel, "_purge", ["self", "queue"])


def check_create_client() -> None:
    expect_params(kombu_redis.Channel, "_create_client", ["self", "asynchronous"])
    source = inspect.getsource(kombu_redis.Channel)
    assert "self._create_client(asynchronous=True)" in source, (
        f"kombu no longer builds its asynchronous (BRPOP) client through _create_client; {FIX}"
    )


def check_lookup() -> None:
    expect_params(virtual.Channel, "_lookup", ["self", "exchange", "routing_key", "default"])


def check_message_envelope() -> None:
    """A message as kombu pushes it: properties.delivery_tag and properties.delivery_info.routing_key."""
    pushed: list[dict[str, Any]] = []
    with kombu.Connection("memory://") as conn:
        channel = conn.default_channel
        original = channel._put
        channel._put = lambda queue, message, **kw: (pushed.append(message), original(queue, message, **kw))
        queue = kombu.Queue("contract", kombu.Exchange("contract", type="direct"), routing_key="contract")
        conn.Producer(channel, serializer="json").publish(
            {"n": 1}, exchange=queue.exchange, routing_key="contract", declare=[queue]
        )
    properties = pushed[0].get("properties") or {}
    assert properties.get("delivery_tag"), f"kombu's message no longer carries properties.delivery_tag: {pushed[0]}"
    assert (properties.get("delivery_info") or {}).get("routing_key") == "contract", (
        f"kombu's message no longer carries properties.delivery_info.routing_key: {pushed[0]}; {FIX}"
    )


def check_resolve_aliases() -> None:
    assert isinstance(getattr(kombu.Connection, "resolve_aliases", None), dict), (
        f"kombu.Connection.resolve_aliases is gone; {FIX}"
    )
    url = "redis://127.0.0.1:6399/0"
    conn = ours.Connection(url, transport=ours.transport_for(url))
    assert conn.info()["transport"] == "redis" and conn.as_uri().startswith("redis://"), (
        f"kombu no longer maps a transport name through resolve_aliases in info()/as_uri(); {FIX}"
    )


def check_connection_info() -> None:
    expect_params(kombu.Connection, "_info", ["self", "resolve"])
    url = "redis://127.0.0.1:6399/0"
    conn = ours.Connection(url, transport=ours.transport_for(url))
    fields = [name for name, _ in conn._info(resolve=False)]
    init = params(kombu.Connection.__init__)[1 : len(fields) + 1]
    assert fields == init, (
        f"kombu's Connection._info() fields {fields} no longer follow Connection.__init__'s parameters "
        f"{init}: our Connection.__reduce__ rebuilds a connection from them; {FIX}"
    )


def check_sentinel_options() -> None:
    options = set(kombu_redis.SentinelChannel.from_transport_options)
    assert {"master_name", "sentinel_kwargs"} <= options, (
        f"kombu's SentinelChannel no longer takes master_name/sentinel_kwargs as transport options "
        f"({sorted(options)}): app/worker/routing.py sentinel_options passes them; {FIX}"
    )
    source = inspect.getsource(kombu_redis.SentinelChannel._sentinel_managed_pool)
    assert "self.connection.client.alt" in source and "sentinel_kwargs" in source, (
        f"kombu's SentinelChannel no longer reads the sentinels from the `;`-separated URL and "
        f"sentinel_kwargs: REDIS_URL=sentinel://…;sentinel://… relies on both; {FIX}"
    )
    assert issubclass(ours.SentinelChannel, kombu_redis.SentinelChannel)
    url = "sentinel://:pw@127.0.0.1:26379;sentinel://127.0.0.1:26380"
    options = {"sentinel_kwargs": {"password": "s"}}
    conn = ours.Connection(url, transport=ours.transport_for(url), transport_options=options)
    info = conn.info()
    assert info["transport_options"]["sentinel_kwargs"]["password"] == "***", (
        f"kombu's Connection.info() layout changed: the sentinels' password would reach `inspect stats`; {FIX}"
    )


def check_connection_switch() -> None:
    expect_params(kombu.Connection, "switch", ["self", "conn_str"])
    url = "sentinel://:pw@127.0.0.1:26379/3;sentinel://127.0.0.1:26380"
    conn = ours.Connection(url, transport=ours.transport_for(url))
    conn.switch("sentinel://127.0.0.1:26380")
    assert (conn.transport_cls, conn.port, conn.password, conn.virtual_host) == (
        ours.transport_for(url),
        26380,
        "pw",
        "3",
    ), f"kombu's Connection.switch() changed: a failover to the next sentinel URL must keep our transport; {FIX}"


CHECKS: dict[str, Callable[[], None]] = {
    "kombu.Connection.switch": check_connection_switch,
    "kombu.SentinelChannel.options": check_sentinel_options,
    "kombu.QoS._delivered": check_qos_delivered,
    "kombu.QoS.append": check_qos_append,
    "kombu.redis.unacked_layout": check_unacked_layout,
    "kombu.QoS._remove_from_indices": check_remove_from_indices,
    "kombu.QoS.restore_unacked": check_restore_unacked,
    "kombu.Channel._put": check_put,
    "kombu.Channel._q_for_pri": check_q_for_pri,
    "kombu.Channel._get_message_priority": check_get_message_priority,
    "kombu.Channel._do_restore_message": check_do_restore_message,
    "kombu.Channel._purge": check_purge,
    "kombu.Channel._create_client": check_create_client,
    "kombu.Channel._lookup": check_lookup,
    "kombu.message_envelope": check_message_envelope,
    "kombu.Connection.resolve_aliases": check_resolve_aliases,
    "kombu.Connection._info": check_connection_info,
}
