"""kombu's Redis transport with Librarian's edges: the publish journal, message holders, and a
channel that survives losing its connection. Only the kombu overrides live here; the logic they
call is in journal.py and holders.py, plain functions over a redis client.

What changes, against kombu 5.7's `kombu.transport.redis`:
- `Channel._put` publishes a task message and journals it in one script (kombu#305: a worker killed
  between BRPOP and its `unacked` write loses the message; app/broker/journal.py);
- `QoS.append` records the worker incarnation that took a message next to kombu's `unacked` write,
  and `QoS.ack`/`reject` clear `unacked`, the holder and the journal in one script that does
  nothing when the message was taken over meanwhile (app/broker/holders.py);
- `QoS.restore_unacked` (a channel closing, a worker's warm shutdown) skips messages another
  incarnation holds now, and does not fail on a channel whose connection was already torn down;
- `Channel._do_restore_message` renumbers a pushed-back message in the journal;
- `Channel._create_client` reuses one synchronous redis-py client per channel and pool;
- with `publish_wait_replicas` (the API's REDIS_PUBLISH_WAIT_REPLICAS), `Channel._put` sends
  `WAIT n ms` right after the journal script, on the same connection (one pipeline), and raises
  NotReplicated when fewer replicas confirmed: replication is asynchronous, and a message only the
  primary had is lost in a Sentinel failover (docs/reliability.md, "Broker HA").

Every private kombu name used here carries a `# private:` marker checked by tests/contract.
The transports are named by import path in Celery's `broker_transport` (`TRANSPORT_NAMES`).
"""

from __future__ import annotations

import logging
from time import time
from typing import Any

import kombu
import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from app.broker import holders, journal, keys

logger = logging.getLogger("librarian.broker.transport")


class JournalQoS(kombu_redis.QoS):
    """kombu's Redis QoS with holders and the journal's ack, safe on a channel whose connection is gone.

    Celery's clean-up of a lost broker connection (Connection.collect(), then close()) leaves the
    old channel without a transport client. kombu 5.7 then fails with AttributeError when it
    builds a pool to restore that channel's unacknowledged messages or to acknowledge a task that
    finished after the outage; the error escapes Celery ("Unrecoverable error") and the worker
    stops for good (tests/worker/test_broker_restart.py). Such a channel can reach no broker
    anyway: an ack raises a connection error instead, which Celery logs and survives, and the
    messages are put back by the dead-holder or visibility-timeout sweeps.
    """

    def _connection_gone(self) -> bool:
        return getattr(self.channel.connection, "client", None) is None

    def _require_connection(self, delivery_tag: str) -> None:
        if self._connection_gone():
            raise redis.ConnectionError(
                f"cannot acknowledge {delivery_tag}: its channel's broker connection was closed; "
                "the message is put back when its holder is found dead"
            )

    def append(self, message: Any, delivery_tag: str) -> None:  # private: kombu.QoS.append
        me = holders.incarnation()
        if me is None or not self.channel.journaling:
            return super().append(message, delivery_tag)
        delivery = message.delivery_info
        with self.pipe_or_acquire() as pipe:
            # kombu's own `unacked` write (same layout, checked by tests/contract), plus the holder.
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()})  # private: kombu.redis.unacked_layout
            pipe.hset(
                self.unacked_key,
                delivery_tag,
                kombu_redis.dumps([message._raw, delivery["exchange"], delivery["routing_key"]]),
            )
            holders.record_taken(pipe, me, delivery_tag).execute()
        virtual.QoS.append(self, message, delivery_tag)

    def restore_unacked(self, client: Any = None) -> Any:  # private: kombu.QoS.restore_unacked
        if client is None and self._connection_gone():
            logger.warning(
                "broker connection already torn down: %d unacknowledged message(s) left "
                "for the dead-holder or visibility-timeout sweep",
                len(self._delivered),
            )
            self._delivered.clear()  # private: kombu.QoS._delivered
            return None
        me = holders.incarnation()
        if me is not None and self._delivered and self.channel.journaling:
            # A worker frozen past WORKER_DEAD_AFTER had its messages taken over: not ours to restore.
            with self.channel.conn_or_acquire(client) as conn:
                tags = list(self._delivered)
                owners = conn.hmget(keys.HOLDER, tags) if tags else []
            for tag, owner in zip(tags, owners, strict=True):
                if owner is not None and journal.text(owner) != me:
                    logger.warning("not restoring %s: taken over by %s", tag, journal.text(owner))
                    self._delivered.pop(tag, None)
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

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        # kombu calls this wherever a message leaves `unacked` (restores, requeues): its holder goes too.
        pipe = super()._remove_from_indices(delivery_tag, pipe)  # private: kombu.QoS._remove_from_indices
        me = holders.incarnation()
        if me is not None and self.channel.journaling:
            pipe = pipe.hdel(keys.HOLDER, delivery_tag).srem(holders.held_key(me), delivery_tag)
        return pipe

    def _forget(self, delivery_tag: str) -> None:
        channel = self.channel
        done = journal.forget(
            channel.plain_client,
            channel.journal_names,
            unacked_index=self.unacked_index_key,
            unacked=self.unacked_key,
            tag=delivery_tag,
            holder=holders.incarnation() or "",
        )
        if not done:
            logger.warning(
                "acknowledgement of %s skipped: the message was taken over while this worker "
                "was unresponsive (it is held by another worker or back on its queue)",
                delivery_tag,
            )


class NotReplicated(redis.RedisError):
    """WAIT confirmed fewer replicas than asked: the message is queued on the primary (it runs if
    the primary survives) but could be lost in a failover, so it is not acknowledged."""

    def __init__(self, confirmed: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(f"{confirmed} of {wanted} replica(s) confirmed the publish within {timeout_ms} ms")
        self.confirmed = confirmed


_JOURNAL_OPTIONS = (  # settable through broker_transport_options, like kombu's own channel options
    "publish_wait_replicas",
    "publish_wait_ms",
    "journal_key",
    "journal_index_prefix",
    "journal_sequence_key",
    "journal_tail_sequence_key",
    "journal_suspects_key",
    "journal_queues",
)


class JournalChannelMixin:
    """The journal side of a kombu Redis channel (plain or Sentinel)."""

    QoS = JournalQoS
    journal_key = keys.JOURNAL
    journal_index_prefix = keys.JOURNAL_INDEX_PREFIX
    journal_sequence_key = keys.JOURNAL_SEQUENCE
    journal_tail_sequence_key = keys.JOURNAL_TAIL_SEQUENCE
    journal_suspects_key = keys.JOURNAL_SUSPECTS
    journal_queues: tuple[str, ...] = ()  # task queues only: reply and pidbox queues are never acked
    publish_wait_replicas = 0  # WAIT for this many replicas after each journaled publish (0: no wait)
    publish_wait_ms = 500

    # Attributes kombu's Channel provides (declared for the type checker).
    pool: Any
    global_keyprefix: str
    priority_steps: list[int]
    unacked_key: str
    _expires: dict[str, int]

    @property
    def journaling(self) -> bool:
        # kombu prefixes keys command by command (not inside scripts): with a global key prefix the
        # journal stays off rather than writing keys outside it.
        return bool(self.journal_queues) and not self.global_keyprefix

    @property
    def journal_names(self) -> journal.JournalKeys:
        names = self.__dict__.get("_journal_names")
        if names is None:
            names = self.__dict__["_journal_names"] = journal.JournalKeys(
                self.journal_key,
                self.journal_index_prefix,
                self.journal_sequence_key,
                self.journal_tail_sequence_key,
                self.journal_suspects_key,
            )
        return names

    @property
    def plain_client(self) -> redis.Redis:
        """A redis-py client on kombu's (synchronous) pool for the scripts, created once per channel."""
        client = self.__dict__.get("_plain_client")
        if client is None:
            client = self.__dict__["_plain_client"] = redis.Redis(connection_pool=self.pool)
        return client

    def _create_client(self, asynchronous: bool = False) -> Any:
        # kombu builds a new redis-py client for every synchronous use (each publish, each ack and
        # each "unacked" write in the worker's main process: several per task). Building one copies
        # its response-callback table, ~10 % of the worker's main-process CPU (py-spy, see
        # docs/performance.md). redis-py clients are thread-safe and hold no connection of their
        # own (the pool does), so one per channel and pool does the same job. Pipelines and the
        # asynchronous client (BRPOP) stay as kombu makes them.
        if asynchronous:  # private: kombu.Channel._create_client
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool
        cached = self.__dict__.get("_sync_client")
        if cached is None or cached[0] is not pool:
            cached = self.__dict__["_sync_client"] = (pool, super()._create_client())  # type: ignore[misc]
        return cached[1]

    def index_key(self, queue_key: str) -> str:
        return self.journal_names.index(queue_key)

    def queue_key(self, queue: str, priority: int) -> str:
        return str(self._q_for_pri(queue, priority))  # type: ignore[attr-defined]  # private: kombu.Channel._q_for_pri

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:  # private: kombu.Channel._put
        tag = (message.get("properties") or {}).get("delivery_tag")
        if queue not in self.journal_queues or not tag or not self.journaling:
            return super()._put(queue, message, **kwargs)  # type: ignore[misc]
        priority = self._get_message_priority(message, reverse=False)  # type: ignore[attr-defined]  # private: kombu.Channel._get_message_priority
        key = self.queue_key(queue, priority)
        payload = kombu_redis.dumps(message)
        keys_, args = journal.publish_args(self.journal_names, key, payload, tag)
        wanted = int(self.publish_wait_replicas)
        if wanted <= 0:
            journal.script(journal.PUBLISH)(keys=keys_, args=args, client=self.plain_client)
        else:  # WAIT counts the writes of its own connection: the pipeline keeps both on one
            with self.plain_client.pipeline(transaction=False) as pipe:
                journal.script(journal.PUBLISH)(keys=keys_, args=args, client=pipe)
                pipe.execute_command("WAIT", wanted, int(self.publish_wait_ms))
                confirmed = int(pipe.execute()[-1])
            if confirmed < wanted:
                raise NotReplicated(confirmed, wanted, int(self.publish_wait_ms))
        if self._expires and queue in self._expires:
            with self.conn_or_acquire() as client, client.pipeline() as pipe:  # type: ignore[attr-defined]
                for pri in self.priority_steps:
                    pipe.pexpire(self.queue_key(queue, pri), self._expires[queue])
                pipe.execute()

    def _do_restore_message(
        self, payload: dict[str, Any], exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
    ) -> None:  # private: kombu.Channel._do_restore_message
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)  # type: ignore[misc]
        tag = (payload.get("properties") or {}).get("delivery_tag")
        if tag and self.journaling:
            pipe.eval(*journal.renumber_args(self.journal_names, tag, leftmost=leftmost))

    def _purge(self, queue: str) -> int:  # private: kombu.Channel._purge
        size = int(super()._purge(queue))  # type: ignore[misc]
        if queue in self.journal_queues and self.journaling:
            journal.purge(
                self.plain_client, self.journal_names, [self.queue_key(queue, pri) for pri in self.priority_steps]
            )
        return size

    def queue_keys(self) -> list[str]:
        return [self.queue_key(q, pri) for q in self.journal_queues for pri in self.priority_steps]

    def restore_targets(self, raw: bytes | str) -> list[tuple[str, str]]:
        """(queue list, message) pairs to put an `unacked` entry back where kombu's own restore would
        (`_do_restore_message`): each bound queue, marked redelivered."""
        message, exchange, routing_key = kombu_redis.loads(journal.text(raw))  # private: kombu.redis.unacked_layout
        for part in (message.get("headers"), (message.get("properties") or {}).get("delivery_info")):
            if isinstance(part, dict):
                part["redelivered"] = True
        priority = self._get_message_priority(message, reverse=False)  # type: ignore[attr-defined]
        payload = kombu_redis.dumps(message)
        queues = self._lookup(exchange, routing_key)  # type: ignore[attr-defined]  # private: kombu.Channel._lookup
        return [(self.queue_key(queue, priority), payload) for queue in queues]


class Channel(JournalChannelMixin, kombu_redis.Channel):
    # kombu annotates the tuple's exact length: a longer tuple is what the option list needs.
    from_transport_options = kombu_redis.Channel.from_transport_options + _JOURNAL_OPTIONS  # type: ignore[assignment]


class SentinelChannel(JournalChannelMixin, kombu_redis.SentinelChannel):
    from_transport_options = kombu_redis.SentinelChannel.from_transport_options + _JOURNAL_OPTIONS  # type: ignore[assignment]


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

    # kombu types it as an instance attribute, so no ClassVar; it is read, never mutated.
    resolve_aliases = {  # noqa: RUF012
        **kombu.Connection.resolve_aliases,  # private: kombu.Connection.resolve_aliases
        **{name: scheme for scheme, name in TRANSPORT_NAMES.items()},
    }

    def ensure_connection(self, *args: Any, **kwargs: Any) -> Any:
        """kombu's, retrying after 1, 2, 3 … s (capped at 30) instead of 2, 4, 6 …: Celery's consumer
        reconnects with the defaults, so after a Sentinel failover (a new primary within ~2-3 s)
        it took its first task 6 s or 12 s after the kill; now 3 s or 6 s. The number of retries
        (broker_connection_max_retries) still spans about as long an outage."""
        if len(args) <= 2:  # (errback, max_retries): the intervals were not given
            kwargs.setdefault("interval_start", 1)
            kwargs.setdefault("interval_step", 1)
        return super().ensure_connection(*args, **kwargs)

    def switch(self, conn_str: str) -> None:  # private: kombu.Connection.switch
        """kombu's, keeping our transport. A connection that fails over to the next URL of a
        `;`-separated list (every sentinel:// REDIS_URL) is re-initialised from that URL, whose
        scheme names kombu's stock transport: the worker's consumer and recovery thread then ran
        on kombu's SentinelChannel after a failover, without the journal or holders, and the
        incarnation beats stopped (tests/reliability/test_sentinel_failover.py). Credentials and
        database, which REDIS_URL gives on its first address only, are kept too."""
        kept = ("userid", "password", "virtual_host")
        ours, before = self.transport_cls, {name: getattr(self, name) for name in kept}
        super().switch(conn_str)
        if ours in TRANSPORT_NAMES.values() and ours == transport_for(conn_str):
            self.transport_cls = ours
            for name, value in before.items():
                if not getattr(self, name):
                    setattr(self, name, value)

    def info(self) -> dict[str, Any]:  # private: kombu.SentinelChannel.options
        """kombu's, with the sentinels' password masked: Celery's `inspect stats` sends this
        dict (minus the broker password only) to every client, Flower included."""
        info: dict[str, Any] = super().info()
        options = info.get("transport_options")
        if isinstance(options, dict) and isinstance(options.get("sentinel_kwargs"), dict):
            hidden = {k: "***" if k == "password" and v else v for k, v in options["sentinel_kwargs"].items()}
            info["transport_options"] = {**options, "sentinel_kwargs": hidden}
        return info

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, tuple(dict(self._info(resolve=False)).values()), None  # private: kombu.Connection._info
