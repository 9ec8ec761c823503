"""kombu's Redis transport plus a publish journal, so a message a killed worker popped is not lost.

kombu's Redis transport takes a message off its queue with BRPOP and only afterwards records it in
the `unacked` hash (kombu issue #305 and friends). A worker SIGKILLed between the two takes the
message with it: it is in no queue, not in `unacked`, and no restart or visibility timeout brings
it back. Celery and kombu offer nothing for this, so Librarian closes the gap itself, staying on
kombu's transport and changing only its edges:

- publishing a task message also writes it to a journal (a hash by delivery tag, plus a sorted set
  of publish times) in the same MULTI as the LPUSH;
- acknowledging or rejecting it (without requeue) deletes the journal entry in the same MULTI
  that clears `unacked`: the journal holds exactly the messages not yet finished with;
- `recover_lost_messages`, run periodically by every worker (`app/worker/recovery.py`), republishes a
  journal entry that is in no queue and not in `unacked` on two sweeps at least `grace` seconds
  apart. A cheap atomic count (journal size vs queued + unacked) tells when a sweep has to look at
  the queues at all, so a deep backlog costs nothing until something is actually missing.

Delivery stays at least once (tasks must be idempotent under late acks anyway): a worker frozen
(SIGSTOP) for longer than the grace with a message in that window may run it after its republished
copy ran. A copy of every queued message is kept in the journal, so Redis holds queued messages
twice. Messages pushed by other clients (not through this transport) are not journaled; in a queue
they can only hide a loss from the count check, never cause a republish.
"""

from __future__ import annotations

import json
from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

JOURNAL_KEY = "librarian:journal"  # hash: delivery tag -> JSON [queue key, message as pushed]
JOURNAL_INDEX_KEY = "librarian:journal:index"  # sorted set: delivery tag -> publish time
SUSPECTS_KEY = "librarian:journal:suspects"  # hash: delivery tag -> first time seen missing
SWEEP_LOCK_KEY = "librarian:journal:sweep-lock"

# How many tags the journal holds that are neither in `unacked` nor queued (an upper bound when
# foreign messages sit in the queues). One atomic snapshot: ZCARD, the in-flight tags that are
# journaled, and the queue lengths.
_UNACCOUNTED = """
local journaled = redis.call('ZCARD', KEYS[1])
local inflight = 0
for _, tag in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('HEXISTS', KEYS[3], tag) == 1 then inflight = inflight + 1 end
end
local queued = 0
for i = 4, #KEYS do queued = queued + redis.call('LLEN', KEYS[i]) end
return journaled - inflight - queued
"""

# Republish one lost message, unless it was acknowledged (journal entry gone) or is in flight.
_REPUBLISH = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
local entry = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]))
redis.call('RPUSH', ARGV[3] .. entry[1], entry[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


class JournalQoS(kombu_redis.QoS):
    def ack(self, delivery_tag: str) -> None:
        self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)  # kombu's QoS.ack minus its own index removal, done above

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:  # back to its queue: the journal entry stays
            return super().reject(delivery_tag, requeue=True)
        self._forget(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def _forget(self, delivery_tag: str) -> None:
        channel = self.channel
        pipe = self._remove_from_indices(delivery_tag)
        pipe.hdel(channel.journal_key, delivery_tag).zrem(channel.journal_index_key, delivery_tag)
        pipe.execute()


class JournalChannelMixin:
    """The journal side of a kombu Redis channel (plain or Sentinel)."""

    QoS = JournalQoS
    journal_key = JOURNAL_KEY
    journal_index_key = JOURNAL_INDEX_KEY
    journal_suspects_key = SUSPECTS_KEY
    journal_queues: tuple[str, ...] = ()  # task queues only: reply and pidbox queues are never acked

    from_transport_options = kombu_redis.Channel.from_transport_options + (
        "journal_key", "journal_index_key", "journal_suspects_key", "journal_queues",
    )

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        tag = (message.get("properties") or {}).get("delivery_tag")
        if queue not in self.journal_queues or not tag:
            return super()._put(queue, message, **kwargs)  # type: ignore[misc]
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        payload = kombu_redis.dumps(message)
        entry = json.dumps([key, payload])
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:
            batch.add("lpush", key, payload)
            batch.add("hset", self.journal_key, tag, entry)
            batch.add("zadd", self.journal_index_key, {tag: time()})
            return
        with self.conn_or_acquire() as client, client.pipeline() as pipe:  # MULTI: all or nothing
            pipe.lpush(key, payload)
            pipe.hset(self.journal_key, tag, entry)
            pipe.zadd(self.journal_index_key, {tag: time()})
            if self._expires and queue in self._expires:
                for pri in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, pri), self._expires[queue])
            pipe.execute()

    def _purge(self, queue: str) -> int:
        size = super()._purge(queue)  # type: ignore[misc]
        if queue in self.journal_queues:
            self._forget_queue(queue)
        return size

    # The sweep below uses commands kombu's key-prefixing client does not prefix (EVAL, LRANGE,
    # HKEYS, HSCAN...), so it runs on a plain client sharing kombu's pool and prefixes every key itself.
    def _raw(self) -> Any:
        import redis

        return redis.Redis(connection_pool=self.client.connection_pool)

    def _k(self, key: str) -> str:
        return f"{self.global_keyprefix or ''}{key}"

    def _forget_queue(self, queue: str) -> None:
        keys = {self._q_for_pri(queue, pri) for pri in self.priority_steps}
        raw = self._raw()
        for tag, entry in raw.hscan_iter(self._k(self.journal_key), count=500):
            if json.loads(entry)[0] in keys:
                raw.pipeline().hdel(self._k(self.journal_key), tag).zrem(self._k(self.journal_index_key), tag).execute()

    def queue_keys(self) -> list[str]:
        return [self._q_for_pri(q, pri) for q in self.journal_queues for pri in self.priority_steps]

    def unaccounted(self) -> int:
        """Journaled messages in no queue and not in flight (0 or less when nothing can be missing)."""
        keys = [self.journal_index_key, self.unacked_key, self.journal_key, *self.queue_keys()]
        return int(self._raw().eval(_UNACCOUNTED, len(keys), *map(self._k, keys)))

    def queued_tags(self) -> set[str]:
        """Delivery tags of every message in the journaled queues (read in chunks from the head:
        pushes there shift unread messages towards the tail, so none is skipped)."""
        raw, tags = self._raw(), set()
        for key in self.queue_keys():
            start = 0
            while True:
                chunk = raw.lrange(self._k(key), start, start + 999)
                for message in chunk:
                    try:
                        tags.add(json.loads(message)["properties"]["delivery_tag"])
                    except (ValueError, KeyError, TypeError):
                        continue  # not a kombu message: nothing of ours
                if len(chunk) < 1000:
                    break
                start += 1000
        return tags

    def recover_lost_messages(self, grace: float) -> list[str]:
        """Republish journal entries missing from queues and `unacked` on two sweeps `grace` apart.

        Returns the tags republished. A tag missing for the first time is only noted: a worker may
        be between its BRPOP and its `unacked` write right now.
        """
        raw = self._raw()
        suspects_key = self._k(self.journal_suspects_key)
        if self.unaccounted() <= 0:
            raw.delete(suspects_key)
            return []
        now = time()
        old = {_text(t) for t in raw.zrange(self._k(self.journal_index_key), 0, now - min(grace, 1.0), byscore=True)}
        inflight = {_text(t) for t in raw.hkeys(self._k(self.unacked_key))}
        missing = old - inflight - self.queued_tags()
        known = {_text(k): float(v) for k, v in raw.hgetall(suspects_key).items()}
        keys = [self._k(self.journal_key), self._k(self.journal_index_key), self._k(self.unacked_key)]
        republished = []
        for tag in missing:
            first_seen = known.get(tag)
            if first_seen is None:
                raw.hset(suspects_key, tag, now)
            elif now - first_seen >= grace:
                if raw.eval(_REPUBLISH, len(keys), *keys, tag, now, self.global_keyprefix or ""):
                    republished.append(tag)
                raw.hdel(suspects_key, tag)
        stale = [tag for tag in known if tag not in missing]
        if stale:
            raw.hdel(suspects_key, *stale)
        return republished


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Channel(JournalChannelMixin, kombu_redis.Channel):
    pass


class SentinelChannel(JournalChannelMixin, kombu_redis.SentinelChannel):
    from_transport_options = JournalChannelMixin.from_transport_options + (
        "master_name", "min_other_sentinels", "sentinel_kwargs", "sentinel_fanout_compat",
    )


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def transport_for(broker_url: str) -> type[kombu_redis.Transport] | None:
    """The journaling transport for a redis, rediss or sentinel URL; None (the URL's own) otherwise."""
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme == "sentinel":
        return SentinelTransport
    return Transport if scheme in ("redis", "rediss") else None
