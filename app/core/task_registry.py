"""The task ids Librarian issued, and which of them finished: what GET /api/v1/tasks/{id} needs to
tell an id it never issued (404) from one whose result expired (410) from one still waiting,
however long it waits in a queue or on a paused owner (its real state: Celery's PENDING).

One hash per id, `librarian:issued:{id}` → {name, finished_at once it ended}, kept ISSUED_TASK_TTL
(30 days) from the publish and again from the end: far longer than a result (RESULT_EXPIRES, 1 h).
The worker marks a task finished once its final state (SUCCESS, FAILURE, REVOKED) is stored
(`note_finished`, from the outcome signals in app/worker/signals.py); the API marks
one it revokes, and one it sees finished. A task that no worker marked (the mark failed on a Redis
error) answers PENDING, not 410, once its result expired.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import redis

from app.broker import keys
from app.core.config import settings
from app.core.redis import get_redis

KEY_PREFIX = keys.ISSUED_PREFIX

# Only an id the API issued is marked: the canary, chain steps and tasks sent by hand get no record.
_MARK_FINISHED = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
redis.call('HSET', KEYS[1], 'finished_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Issued:
    name: str
    finished: bool
    owner: str | None = None


def record_issued(client: redis.Redis, task_id: str, task_name: str, owner: str | None = None) -> None:
    """Record the id (and the user it runs for) before its message is published (on a pipeline:
    two commands)."""
    key = KEY_PREFIX + task_id
    client.hset(key, mapping={"name": task_name, **({"owner": owner} if owner else {})})
    client.expire(key, settings.ISSUED_TASK_TTL)


def forget_issued(client: redis.Redis, task_id: str) -> None:
    client.delete(KEY_PREFIX + task_id)


def mark_finished(client: redis.Redis, task_id: str) -> bool:
    """Note that the task reached a final state; False when the id was never issued (nothing written)."""
    return bool(client.eval(_MARK_FINISHED, 1, KEY_PREFIX + task_id, f"{time.time():.3f}", settings.ISSUED_TASK_TTL))


def note_finished(task_id: str | None) -> None:
    """The worker's hook, called from the outcome signals once the final state is stored. Best
    effort: on a Redis error the task's outcome stands, only its id answers PENDING after the
    result expires."""
    if task_id:
        with contextlib.suppress(redis.RedisError):
            mark_finished(get_redis(), task_id)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # a raw client answers bytes


def issued(client: redis.Redis, task_id: str) -> Issued | None:
    """The record of this id, or None when Librarian never issued it (or ISSUED_TASK_TTL passed)."""
    key = KEY_PREFIX + task_id
    try:
        fields = {_text(k): _text(v) for k, v in client.hgetall(key).items()}
    except redis.ResponseError as exc:  # a plain-string record, written before this layout
        if not str(exc).startswith("WRONGTYPE"):
            raise
        name = client.get(key)
        return Issued(_text(name), finished=False) if name is not None else None
    if "name" not in fields:
        return None
    return Issued(fields["name"], finished="finished_at" in fields, owner=fields.get("owner"))
