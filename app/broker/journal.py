"""The publish journal: Lua scripts and plain functions over a redis-py client, no kombu needed.

Why it exists (kombu issue #305): kombu's Redis transport takes a message off its queue with BRPOP
and only afterwards records it in the `unacked` hash. A worker SIGKILLed between the two takes the
message with it: it is in no queue, not in `unacked`, and no restart or visibility timeout brings
it back. The journal closes that gap:

- publishing a task message also writes it to the journal (a hash by delivery tag, plus a sorted
  set per queue list numbering the messages in push order) in the same script as the LPUSH;
- acknowledging or rejecting it (without requeue) deletes the entry in the same script that clears
  `unacked`: the journal holds exactly the messages not yet finished with;
- `recover_lost` republishes a journaled message that is neither in its queue nor in `unacked` on
  two sweeps at least `grace` seconds apart. A queue hands out its tail first, so "no longer in the
  queue" is every message numbered before the current tail: one cheap script, whatever the backlog.

Numbers, not clocks: a push at the head (publish, requeue) takes the next number of one counter, a
push at the tail (kombu's restore, a republish) the next *negative* number of another, each in the
same atomic step as its push. Messages pushed by other clients are not journaled: at the tail of a
queue they postpone that queue's check until taken, and never cause a republish.

The scripts hard-code kombu's `unacked` hash (delivery tag -> JSON [message, exchange, routing key])
and its message envelope (`properties.delivery_tag`): tests/contract checks both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from time import time
from typing import Any

import redis

from app.broker import keys

# KEYS: queue list, journal, index of that list, sequence. ARGV: message, tag, journal entry.
PUBLISH = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[2])
return 1
"""

# kombu's ack bookkeeping plus the journal's and the holder's, in one atomic round trip.
# KEYS: unacked_index, unacked, journal, holder hash, held set of the acking incarnation.
# ARGV: tag, index key prefix, acking incarnation ('' when holders are not tracked).
# Returns 0, touching nothing, when the message is no longer the acker's: another incarnation holds
# it now, or it was put back on its queue (app/broker/holders.py). Its journal entry then stays
# with the copy that will run.
# private: kombu.redis.unacked_layout (the `unacked` hash and `unacked_index` sorted set kombu keeps)
FORGET = """
local holder = redis.call('HGET', KEYS[4], ARGV[1])
if holder and holder ~= ARGV[3] then return 0 end
if not holder and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
if holder then
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('SREM', KEYS[5], ARGV[1])
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if entry then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', ARGV[2] .. cjson.decode(entry)[1], ARGV[1])
end
return 1
"""

# The journaled messages that can no longer be in their queue and are not in `unacked`.
# KEYS: unacked, then (queue list, its index) pairs. ARGV: most tags per queue.
CANDIDATES = """
local found = {}
for i = 2, #KEYS, 2 do
  local queue, index = KEYS[i], KEYS[i + 1]
  local bound = '+inf'
  local tail = redis.call('LINDEX', queue, -1)
  if tail then
    bound = nil
    local ok, message = pcall(cjson.decode, tail)
    if ok and type(message) == 'table' and type(message.properties) == 'table' then
      local tag = message.properties.delivery_tag -- private: kombu.message_envelope
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
REPUBLISH = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry or redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
entry = cjson.decode(entry)
redis.call('RPUSH', entry[1], entry[2])
redis.call('ZADD', ARGV[2] .. entry[1], -redis.call('INCR', KEYS[3]), ARGV[1])
return 1
"""

# Renumber a message pushed back by kombu (queued in its restore transaction, after the push).
# KEYS: journal, sequence, tail sequence. ARGV: tag, index key prefix, 1 if pushed at the head.
RENUMBER = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
local number
if ARGV[3] == '1' then number = redis.call('INCR', KEYS[2]) else number = -redis.call('INCR', KEYS[3]) end
redis.call('ZADD', ARGV[2] .. cjson.decode(entry)[1], number, ARGV[1])
return 1
"""

_scripts: dict[str, Any] = {}


def script(source: str) -> Any:
    """A redis-py Script (EVALSHA, loaded on first NOSCRIPT), bound to a client at each call."""
    found = _scripts.get(source)
    if found is None:
        found = _scripts[source] = redis.Redis().register_script(source)  # no connection is made here
    return found


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class JournalKeys:
    """The journal's key names (settable per deployment through kombu's transport options)."""

    journal: str = keys.JOURNAL
    index_prefix: str = keys.JOURNAL_INDEX_PREFIX
    sequence: str = keys.JOURNAL_SEQUENCE
    tail_sequence: str = keys.JOURNAL_TAIL_SEQUENCE
    suspects: str = keys.JOURNAL_SUSPECTS

    def index(self, queue_key: str) -> str:
        return f"{self.index_prefix}{queue_key}"


def publish_args(names: JournalKeys, queue_key: str, payload: str, tag: str) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of PUBLISH for one message as pushed."""
    return (
        [queue_key, names.journal, names.index(queue_key), names.sequence],
        [payload, tag, json.dumps([queue_key, payload])],
    )


def publish(client: redis.Redis, names: JournalKeys, queue_key: str, payload: str, tag: str) -> None:
    """LPUSH a message onto its queue list and journal it, atomically."""
    keys_, args = publish_args(names, queue_key, payload, tag)
    script(PUBLISH)(keys=keys_, args=args, client=client)


def forget(
    client: redis.Redis, names: JournalKeys, *, unacked_index: str, unacked: str, tag: str, holder: str = ""
) -> bool:
    """Clear a finished message from `unacked`, its holder and the journal. False (nothing touched)
    when `holder` no longer holds it."""
    held = keys.HELD.format(incarnation=holder)
    return bool(
        script(FORGET)(
            keys=[unacked_index, unacked, names.journal, keys.HOLDER, held],
            args=[tag, names.index_prefix, holder],
            client=client,
        )
    )


def renumber_args(names: JournalKeys, tag: str, *, leftmost: bool) -> tuple[Any, ...]:
    """EVAL arguments renumbering a message pushed back inside a kombu restore transaction (EVAL,
    not EVALSHA: a NOSCRIPT inside a transaction would be lost)."""
    return (
        RENUMBER,
        3,
        names.journal,
        names.sequence,
        names.tail_sequence,
        tag,
        names.index_prefix,
        "1" if leftmost else "0",
    )


def missing(
    client: redis.Redis, names: JournalKeys, *, unacked: str, queue_keys: Sequence[str], limit: int = 1000
) -> list[str]:
    """Tags of journaled messages taken off their queue and not in `unacked` (lost, or being
    received right now), at most `limit` per queue list."""
    keys_ = [unacked]
    for key in queue_keys:
        keys_ += [key, names.index(key)]
    return [text(tag) for tag in script(CANDIDATES)(keys=keys_, args=[limit], client=client)]


def recover_lost(
    client: redis.Redis,
    names: JournalKeys,
    *,
    unacked: str,
    queue_keys: Sequence[str],
    grace: float,
    now: float | None = None,
) -> list[str]:
    """Republish journaled messages found missing on two sweeps at least `grace` seconds apart.

    Returns the tags republished. A tag missing for the first time is only noted: a worker may be
    between its BRPOP and its `unacked` write right now.
    """
    now = time() if now is None else now
    lost = set(missing(client, names, unacked=unacked, queue_keys=queue_keys))
    known = {text(k): float(v) for k, v in client.hgetall(names.suspects).items()}
    republished = []
    for tag in lost:
        first_seen = known.get(tag)
        if first_seen is None:
            client.hset(names.suspects, tag, now)
        elif now - first_seen >= grace:
            if script(REPUBLISH)(
                keys=[names.journal, unacked, names.tail_sequence], args=[tag, names.index_prefix], client=client
            ):
                republished.append(tag)
            client.hdel(names.suspects, tag)
    stale = [tag for tag in known if tag not in lost]
    if stale:
        client.hdel(names.suspects, *stale)
    return republished


def purge(client: redis.Redis, names: JournalKeys, queue_keys: Sequence[str]) -> None:
    """Forget the journal entries of purged queue lists."""
    for key in queue_keys:
        index = names.index(key)
        tags = client.zrange(index, 0, -1)
        for start in range(0, len(tags), 1000):
            client.hdel(names.journal, *tags[start : start + 1000])
        client.delete(index)
