"""Who holds which unacknowledged message, and putting back the messages of a worker that died.

kombu's Redis transport keeps a taken-but-unacknowledged message in the `unacked` hash and puts it
back on its queue only when the broker visibility timeout has passed (7,200 s by default, and it
must exceed the longest task). A worker killed by the OOM killer or lost with its node leaves its
tasks `STARTED` for that long. Celery has the same limit. Librarian knows much sooner that a worker
is gone, so it records, next to each `unacked` entry, the worker process that holds it:

- an *incarnation* is one run of one worker process: node name, pid and a random token. A worker
  restarted under the same node name is a new incarnation, so its previous run's messages are
  never taken for its own;
- each incarnation beats (a sorted set scored by the Redis server's clock, so hosts' clocks do not
  matter) and records every message it takes (a hash tag -> incarnation, plus a set per
  incarnation) in the same round trip as kombu's `unacked` write;
- when an incarnation has not beaten for `WORKER_DEAD_AFTER` seconds, a live worker's recovery
  thread (app/broker/recovery.py) puts each message it still holds back at the tail of its queue
  (taken next), one atomic script per message that first checks the holder is unchanged;
- an acknowledgement clears the holder in the script that clears `unacked` (journal.FORGET), and is
  skipped when another incarnation holds the message now: a worker frozen (SIGSTOP) past the limit
  that wakes up does not ack or restore what was taken over. Its task may run twice: delivery is
  at least once, and tasks are idempotent.

The broker visibility timeout stays as the last resort (workers that record no holder).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis

from app.broker import keys
from app.broker.journal import JournalKeys, script, text

# A beat, scored by the server's clock. KEYS: incarnations. ARGV: incarnation.
BEAT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) + tonumber(now[2]) / 1000000, ARGV[1])
return 1
"""

# Incarnations whose last beat is older than ARGV[1] seconds by the server's clock, and the cutoff.
# KEYS: incarnations.
DEAD = """
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) + tonumber(now[2]) / 1000000 - tonumber(ARGV[1])
return {tostring(cutoff), redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)}
"""

# Put one message a dead incarnation holds back on its queue list(s), at the tail (taken next),
# unless it is no longer that incarnation's (acknowledged, or restored by the visibility timeout).
# KEYS: holder hash, held set of the dead incarnation, unacked, unacked_index, journal, tail sequence.
# ARGV: tag, dead incarnation, journal index prefix, then (queue list, message) pairs.
RESTORE = """
local tag = ARGV[1]
redis.call('SREM', KEYS[2], tag)
if redis.call('HGET', KEYS[1], tag) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], tag)
if redis.call('HEXISTS', KEYS[3], tag) == 0 then return 0 end
redis.call('HDEL', KEYS[3], tag)
redis.call('ZREM', KEYS[4], tag)
local journaled = redis.call('HEXISTS', KEYS[5], tag) == 1
for i = 4, #ARGV, 2 do
  redis.call('RPUSH', ARGV[i], ARGV[i + 1])
  if journaled then
    redis.call('ZADD', ARGV[3] .. ARGV[i], -redis.call('INCR', KEYS[6]), tag)
  end
end
return 1
"""

# Forget a dead incarnation once it holds nothing, unless it beat again meanwhile (it was frozen).
# KEYS: incarnations, its held set. ARGV: incarnation, cutoff.
RETIRE = """
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""

DEFAULT_JOURNAL = JournalKeys()  # the default key names (a deployment may rename them: transport options)

_incarnation: str | None = None


def start_incarnation(hostname: str) -> str:
    """Name this process's run of a worker; from now on the messages it takes are recorded as its."""
    global _incarnation
    _incarnation = f"{hostname}/{os.getpid()}/{secrets.token_hex(3)}"
    return _incarnation


def incarnation() -> str | None:
    """This process's incarnation, or None outside a worker (nothing is recorded then)."""
    return _incarnation


def hostname_of(incarnation_id: str) -> str:
    return incarnation_id.split("/", 1)[0]


def process_of(incarnation_id: str) -> str:
    """`hostname/pid`: the process an incarnation belongs to (it starts a new one per broker connection)."""
    return incarnation_id.rsplit("/", 1)[0]


def held_key(incarnation_id: str) -> str:
    return keys.HELD.format(incarnation=incarnation_id)


def beat(client: redis.Redis, incarnation_id: str) -> None:
    script(BEAT)(keys=[keys.INCARNATIONS], args=[incarnation_id], client=client)


def record_taken(pipe: Any, incarnation_id: str, tag: str) -> Any:
    """Queue, on a kombu/redis-py pipeline, the commands recording that `incarnation_id` took `tag`.

    The ZADD NX gives an incarnation that takes a message before its first beat a first score (by
    this host's clock, until the recovery thread's beat replaces it within a second), so that its
    messages are found if it dies in that second. Plain commands, no script: this runs for every
    message a worker takes (bench.broker)."""
    return (
        pipe.hset(keys.HOLDER, tag, incarnation_id)
        .sadd(held_key(incarnation_id), tag)
        .zadd(keys.INCARNATIONS, {incarnation_id: time.time()}, nx=True)
    )


def dead_incarnations(client: redis.Redis, dead_after: float) -> tuple[float, list[str]]:
    """The cutoff (server time) and the incarnations that have not beaten since it."""
    cutoff, dead = script(DEAD)(keys=[keys.INCARNATIONS], args=[dead_after], client=client)
    return float(text(cutoff)), [text(name) for name in dead]


def held_by(client: redis.Redis, incarnation_id: str) -> list[str]:
    return sorted(text(tag) for tag in client.smembers(held_key(incarnation_id)))


def restore(
    client: redis.Redis,
    *,
    incarnation_id: str,
    tag: str,
    unacked: str,
    unacked_index: str,
    targets: Sequence[tuple[str, str]],
    names: JournalKeys = DEFAULT_JOURNAL,
) -> bool:
    """Move `tag` from `unacked` back to its queue lists (`targets`: (queue list, message) pairs) if
    the dead `incarnation_id` still holds it. True when it was put back."""
    args: list[str] = [tag, incarnation_id, names.index_prefix]
    for queue_key, message in targets:
        args += [queue_key, message]
    return bool(
        script(RESTORE)(
            keys=[keys.HOLDER, held_key(incarnation_id), unacked, unacked_index, names.journal, names.tail_sequence],
            args=args,
            client=client,
        )
    )


def retire(client: redis.Redis, incarnation_id: str, cutoff: float) -> None:
    script(RETIRE)(keys=[keys.INCARNATIONS, held_key(incarnation_id)], args=[incarnation_id, cutoff], client=client)
