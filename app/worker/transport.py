"""kombu's Redis transport plus a publish journal, so a message a killed worker popped is not lost.

kombu's Redis transport takes a message off its queue with BRPOP and only afterwards records it in
the `unacked` hash (kombu issue #305 and friends). A worker SIGKILLed between the two takes the
message with it: it is in no queue, not in `unacked`, and no restart or visibility timeout brings
it back. Celery and kombu offer nothing for this, so Librarian closes the gap itself, staying on
kombu's transport and changing only its edges:

- publishing a task message also writes it to a journal (a hash by delivery tag, plus a sorted set
  per queue numbering the messages in push order) in the same Lua script as the LPUSH;
- acknowledging or rejecting it (without requeue) deletes the journal entry in the same script
  that clears `unacked`: the journal holds exactly the messages not yet finished with;
- `recover_lost_messages`, run periodically by every worker (`app/worker/recovery.py`), republishes a
  journaled message that is neither in its queue nor in `unacked` on two sweeps at least `grace`
  seconds apart. A queue hands out its tail first, so "no longer in the queue" is every message
  numbered before the current tail: one cheap script, whatever the depth of the backlog.

Delivery stays at least once (tasks must be idempotent under late acks anyway): a worker frozen
(SIGSTOP) for longer than the grace with a message in that window may run it after its republished
copy ran. A copy of every queued message is kept in the journal, so Redis holds queued messages
twice. Messages pushed by other clients (not through this transport) are not journaled; at the
tail of a queue they postpone that queue's check until they are taken, never cause a republish.
"""

from __future__ import annotations

import json
import logging
from time import time
from typing import Any

import kombu
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

JOURNAL_KEY = "librarian:journal"  # hash: delivery tag -> JSON [queue key, message as pushed]
# One sorted set per queue list, numbering its messages so that the number grows from the tail (taken
# next) to the head: a push at the head (publish, requeue) takes the next number of a counter, a push
# at the tail (kombu's restore, our republish) the next *negative* number of another. Counters, not
# clocks: each push and its number are one atomic step, whatever the producers' clocks say.
JOURNAL_INDEX_PREFIX = "librarian:journal:index:"
JOURNAL_SEQUENCE_KEY = "librarian:journal:seq"
JOURNAL_TAIL_SEQUENCE_KEY = "librarian:journal:tail-seq"
SUSPECTS_KEY = "librarian:journal:suspects"  # hash: delivery tag -> first time seen missing

# KEYS: queue list, journal, index of that list, sequence. ARGV: message, tag, journal entry.
_PUBLISH = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[2])
return 1
"""

# kombu's ack bookkeeping plus the journal's, in one atomic round trip.
# KEYS: unacked_index, unacked, journal. ARGV: tag, index key prefix.
_FORGET = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if entry then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', ARGV[2] .. cjson.decode(entry)[1], ARGV[1])
end
return 1
"""

# The journaled messages that can no longer be in their queue and are not in `unacked`: a queue
# hands out its tail first, so every message journaled before the current tail has been taken.
# KEYS: unacked, then (queue list, its index) pairs. ARGV: most tags per queue.
# A tail we did not journal (pushed by another client) gives no bound: that queue waits a round.
_CANDIDATES = """
local found = {}
for i = 2, #KEYS, 2 do
  local queue, index = KEYS[i], KEYS[i + 1]
  local bound = '+inf'
  local tail = redis.call('LINDEX', queue, -1)
  if tail then
    bound = nil
    local ok, message = pcall(cjson.decode, tail)
    if ok and type(message) == 'table' and type(message.properties) == 'table' then
      local tag = message.properties.delivery_tag
      local score = tag and redis.call('ZSCORE', index, tag)
      if score then bound = '(' .. score end
    end
  end
  if bound then
    for _, tag in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', bound, 'LIMIT', 0, tonumber(ARGV[1]))) do
      if redis.call('HEXISTS', KEYS[1], tag) == 0 then table.insert(found, tag) end
    end
  end
end
return found
"""

# Republish one lost message at the tail, unless it was acknowledged (entry gone) or is in flight.
# KEYS: journal, unacked, tail sequence. ARGV: tag, index key prefix.
_REPUBLISH = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
entry = cjson.decode(entry)
redis.call('RPUSH', entry[1], entry[2])
redis.call('ZADD', ARGV[2] .. entry[1], -redis.call('INCR', KEYS[3]), ARGV[1])
return 1
"""

# Renumber a message kombu pushes back (queued in its restore transaction, after the push).
# KEYS: journal, sequence, tail sequence. ARGV: tag, index key prefix, 1 if pushed at the head.
_RENUMBER = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
local number
if ARGV[3] == '1' then number = redis.call('INCR', KEYS[2]) else number = -redis.call('INCR', KEYS[3]) end
redis.call('ZADD', ARGV[2] .. cjson.decode(entry)[1], number, ARGV[1])
return 1
"""

logger = logging.getLogger("librarian.worker.transport")

_scripts: dict[str, Any] = {}


def _script(source: str) -> Any:
    """A redis-py Script (EVALSHA, loaded on first NOSCRIPT), bound to a client at each call."""
    script = _scripts.get(source)
    if script is None:
        import redis

        script = _scripts[source] = redis.Redis().register_script(source)  # no connection is made here
    return script


class JournalQoS(kombu_redis.QoS):
    """kombu's Redis QoS with the journal's ack, and safe on a channel whose connection is gone.

    Celery's clean-up of a lost broker connection (Connection.collect(), then close()) leaves the
    old channel without a transport client. kombu 5.7 then fails with AttributeError when it
    builds a pool to restore that channel's unacknowledged messages or to acknowledge a task that
    finished after the outage; the error escapes Celery ("Unrecoverable error") and the worker
    stops for good (seen with a task in flight when the broker restarted:
    tests/worker/test_broker_restart.py). Such a channel can reach no broker anyway: an ack raises
    a connection error instead, which Celery logs and survives, and restoring is left to kombu's
    visibility-timeout sweep (the messages are still in `unacked`).
    """

    def _connection_gone(self) -> bool:
        return getattr(self.channel.connection, "client", None) is None

    def _require_connection(self, delivery_tag: str) -> None:
        if self._connection_gone():
            import redis

            raise redis.ConnectionError(
                f"cannot acknowledge {delivery_tag}: its channel's broker connection was closed; "
                "the message returns after the visibility timeout"
            )

    def restore_unacked(self, client: Any = None) -> Any:
        if client is None and self._connection_gone():
            logger.warning("broker connection already torn down: %d unacknowledged message(s) left "
                           "for the visibility-timeout sweep", len(self._delivered))
            self._delivered.clear()
            return None
        return super().restore_unacked(client)

    def ack(self, delivery_tag: str) -> None:
        self._require_connection(delivery_tag)
        if not self.channel.journaling:
            return super().ack(delivery_tag)
        self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)  # kombu's QoS.ack minus its own index removal, done above

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self._require_connection(delivery_tag)
        if requeue or not self.channel.journaling:  # back to its queue: the journal entry stays
            return super().reject(delivery_tag, requeue=requeue)
        self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def _forget(self, delivery_tag: str) -> None:
        channel = self.channel
        _script(_FORGET)(keys=[self.unacked_index_key, self.unacked_key, channel.journal_key],
                         args=[delivery_tag, channel.journal_index_prefix], client=channel.plain_client)


_JOURNAL_OPTIONS = (  # settable through broker_transport_options, like kombu's own channel options
    "journal_key", "journal_index_prefix", "journal_sequence_key", "journal_tail_sequence_key",
    "journal_suspects_key", "journal_queues",
)


class JournalChannelMixin:
    """The journal side of a kombu Redis channel (plain or Sentinel)."""

    QoS = JournalQoS
    journal_key = JOURNAL_KEY
    journal_index_prefix = JOURNAL_INDEX_PREFIX
    journal_sequence_key = JOURNAL_SEQUENCE_KEY
    journal_tail_sequence_key = JOURNAL_TAIL_SEQUENCE_KEY
    journal_suspects_key = SUSPECTS_KEY
    journal_queues: tuple[str, ...] = ()  # task queues only: reply and pidbox queues are never acked


    @property
    def journaling(self) -> bool:
        # kombu prefixes keys command by command (not inside scripts): with a global key prefix the
        # journal stays off rather than writing keys outside it.
        return bool(self.journal_queues) and not self.global_keyprefix

    @property
    def plain_client(self) -> Any:
        """A redis-py client on kombu's (synchronous) pool for the scripts, created once per channel."""
        client = self.__dict__.get("_plain_client")
        if client is None:
            import redis

            client = self.__dict__["_plain_client"] = redis.Redis(connection_pool=self.pool)
        return client

    def _create_client(self, asynchronous: bool = False) -> Any:
        # kombu builds a new redis-py client for every synchronous use (each publish, each ack and
        # each "unacked" write in the worker's main process: several per task). Building one copies
        # its response-callback table, ~10 % of the worker's main-process CPU (py-spy, see
        # docs/performance.md). redis-py clients are thread-safe and hold no connection of their
        # own (the pool does), so one per channel and pool does the same job. Pipelines and the
        # asynchronous client (BRPOP) stay as kombu makes them.
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        cached = self.__dict__.get("_sync_client")
        if cached is None or cached[0] is not pool:
            cached = self.__dict__["_sync_client"] = (pool, super()._create_client())  # type: ignore[misc]
        return cached[1]

    def index_key(self, queue_key: str) -> str:
        return f"{self.journal_index_prefix}{queue_key}"

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        tag = (message.get("properties") or {}).get("delivery_tag")
        if queue not in self.journal_queues or not tag or not self.journaling:
            return super()._put(queue, message, **kwargs)  # type: ignore[misc]
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        payload = kombu_redis.dumps(message)
        keys = [key, self.journal_key, self.index_key(key), self.journal_sequence_key]
        args = [payload, tag, json.dumps([key, payload])]
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:  # a pipeline cannot load a script on NOSCRIPT: send its source
            batch.add("eval", _PUBLISH, len(keys), *keys, *args)
        else:
            _script(_PUBLISH)(keys=keys, args=args, client=self.plain_client)
        if self._expires and queue in self._expires:
            with self.conn_or_acquire() as client, client.pipeline() as pipe:
                for pri in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, pri), self._expires[queue])
                pipe.execute()

    def _do_restore_message(self, payload: dict[str, Any], exchange: str, routing_key: str, pipe: Any,
                            leftmost: bool = False) -> None:
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)  # type: ignore[misc]
        tag = (payload.get("properties") or {}).get("delivery_tag")
        if tag and self.journaling:  # EVAL, not EVALSHA: a NOSCRIPT inside the transaction would be lost
            pipe.eval(_RENUMBER, 3, self.journal_key, self.journal_sequence_key, self.journal_tail_sequence_key,
                      tag, self.journal_index_prefix, "1" if leftmost else "0")

    def _purge(self, queue: str) -> int:
        size = super()._purge(queue)  # type: ignore[misc]
        if queue in self.journal_queues and self.journaling:
            client = self.plain_client
            for pri in self.priority_steps:
                index = self.index_key(self._q_for_pri(queue, pri))
                tags = client.zrange(index, 0, -1)
                for start in range(0, len(tags), 1000):
                    client.hdel(self.journal_key, *tags[start:start + 1000])
                client.delete(index)
        return size

    def queue_keys(self) -> list[str]:
        return [self._q_for_pri(q, pri) for q in self.journal_queues for pri in self.priority_steps]

    def missing_messages(self, limit: int = 1000) -> list[str]:
        """Tags of journaled messages taken off their queue and not in `unacked` (lost, or being
        received right now), at most `limit` per queue list."""
        keys = [self.unacked_key]
        for key in self.queue_keys():
            keys += [key, self.index_key(key)]
        return [_text(tag) for tag in _script(_CANDIDATES)(keys=keys, args=[limit], client=self.plain_client)]

    def recover_lost_messages(self, grace: float) -> list[str]:
        """Republish journaled messages found missing on two sweeps at least `grace` seconds apart.

        Returns the tags republished. A tag missing for the first time is only noted: a worker may
        be between its BRPOP and its `unacked` write right now.
        """
        if not self.journaling:
            return []
        client = self.plain_client
        now = time()
        missing = set(self.missing_messages())
        known = {_text(k): float(v) for k, v in client.hgetall(self.journal_suspects_key).items()}
        republished = []
        for tag in missing:
            first_seen = known.get(tag)
            if first_seen is None:
                client.hset(self.journal_suspects_key, tag, now)
            elif now - first_seen >= grace:
                keys = [self.journal_key, self.unacked_key, self.journal_tail_sequence_key]
                if _script(_REPUBLISH)(keys=keys, args=[tag, self.journal_index_prefix], client=client):
                    republished.append(tag)
                client.hdel(self.journal_suspects_key, tag)
        stale = [tag for tag in known if tag not in missing]
        if stale:
            client.hdel(self.journal_suspects_key, *stale)
        return republished


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Channel(JournalChannelMixin, kombu_redis.Channel):
    from_transport_options = kombu_redis.Channel.from_transport_options + _JOURNAL_OPTIONS


class SentinelChannel(JournalChannelMixin, kombu_redis.SentinelChannel):
    from_transport_options = kombu_redis.SentinelChannel.from_transport_options + _JOURNAL_OPTIONS


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


# Celery's `broker_transport` names our transports by import path ("module:Class", which kombu's
# resolve_transport loads), one name per URL scheme: rediss shares the class. A name, not the class,
# because kombu puts it in Connection.info() and in the connection URI, which must stay JSON and a
# URL: with a class, every `inspect stats` reply failed to encode ("Control command error:
# EncodeError") and Flower showed no worker detail page.
TRANSPORT_NAMES = {
    "redis": f"{__name__}:Transport",
    "rediss": f"{__name__}:TLSTransport",
    "sentinel": f"{__name__}:SentinelTransport",
}
TLSTransport = Transport  # the name `rediss` URLs go by (kombu's redis transport does both)


def transport_for(broker_url: str) -> str | None:
    """The name of our transport for a redis, rediss or sentinel URL (it journals only when given
    `journal_queues`); None (the URL's own) otherwise."""
    return TRANSPORT_NAMES.get(broker_url.split("://", 1)[0].lower())


class Connection(kombu.Connection):
    """A kombu Connection that reports our transports by their URL scheme.

    kombu maps a transport to the protocol it speaks in `Connection.info()` and `as_uri()` through
    the class attribute `resolve_aliases` (`pyamqp` is shown as `amqp`). Mapping our names back to
    `redis`, `rediss` and `sentinel` keeps the worker banner, `inspect stats` (`broker.transport`)
    and Flower's Broker page, which picks its Redis client by the URI's scheme, as with the stock
    transport. `clone()` and pickling keep our transport (they use the unresolved name).
    """

    resolve_aliases = {**kombu.Connection.resolve_aliases,
                       **{name: scheme for scheme, name in TRANSPORT_NAMES.items()}}

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, tuple(dict(self._info(resolve=False)).values()), None

