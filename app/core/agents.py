"""Agent control over Redis: pause/resume a user's tasks (the emergency brake) and status events.

State lives in a key (survives restarts); pub/sub channels tell workers and listeners at once:
  agent:pause:{user_id}   a user's tasks must not start
  agent:resume:{user_id}  they may start again
  agent:status:{user_id}  task progress events, streamed to clients (SSE)
While paused, a worker moves that user's messages to a holding list instead of running them;
resume puts them back on their queues: nothing is dropped.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from app.broker import keys

PAUSE_CHANNEL = keys.PAUSE_CHANNEL
RESUME_CHANNEL = keys.RESUME_CHANNEL
STATUS_CHANNEL = keys.STATUS_CHANNEL
PAUSED_KEY = keys.PAUSED
HELD_KEY = keys.HELD_MESSAGES
# Which user holds a task: written with the held message, read by GET /tasks/{id} (no list scan).
HELD_TASK_KEY = keys.HELD_TASK
HELD_TASK_TTL = 7 * 24 * 3600
OWNER_HEADER = keys.OWNER_HEADER

# Atomically move every held message back to the queue it came from (its routing key), at the
# consuming end so it runs before newer work. Returns how many were moved.
_RELEASE = """
local moved = 0
while true do
  local raw = redis.call('LPOP', KEYS[1])
  if not raw then return moved end
  local queue = cjson.decode(raw)['properties']['delivery_info']['routing_key'] -- private: kombu.message_envelope
  redis.call('RPUSH', queue, raw)
  moved = moved + 1
end
"""

# Hold only while the pause key exists, atomically with the resume's DEL + release (above).
_HOLD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


def pause(client: redis.Redis, user_id: str) -> None:
    client.set(PAUSED_KEY.format(user_id=user_id), str(time.time()))
    client.publish(PAUSE_CHANNEL.format(user_id=user_id), json.dumps({"event": "paused", "user_id": user_id}))


def resume(client: redis.Redis, user_id: str) -> int:
    """Unpause and requeue what was held. Returns the number of messages put back."""
    client.delete(PAUSED_KEY.format(user_id=user_id))
    client.publish(RESUME_CHANNEL.format(user_id=user_id), json.dumps({"event": "resumed", "user_id": user_id}))
    return int(client.eval(_RELEASE, 1, HELD_KEY.format(user_id=user_id)))


def is_paused(client: redis.Redis, user_id: str) -> bool:
    return bool(client.exists(PAUSED_KEY.format(user_id=user_id)))


def held_count(client: redis.Redis, user_id: str) -> int:
    return int(client.llen(HELD_KEY.format(user_id=user_id)))


def hold_message(client: redis.Redis, user_id: str, raw_message: dict[str, Any]) -> bool:
    """Hold a message while its user is paused. Returns False, holding nothing, when the user is no
    longer paused: the check and the push are one script, so a resume that deletes the pause key
    and then releases the list can never miss a message held in between."""
    task_id = (raw_message.get("headers") or {}).get("id") or ""
    paused, held, held_task = (
        PAUSED_KEY.format(user_id=user_id),
        HELD_KEY.format(user_id=user_id),
        HELD_TASK_KEY.format(task_id=task_id),
    )
    body = json.dumps(raw_message)
    return bool(client.eval(_HOLD, 3, paused, held, held_task, body, user_id, HELD_TASK_TTL, task_id))


def held_for(client: redis.Redis, task_id: str) -> str | None:
    """The user whose pause holds this task, or None (never held, or the user resumed since)."""
    user = client.get(HELD_TASK_KEY.format(task_id=task_id))
    if user is None:
        return None
    user = user.decode() if isinstance(user, bytes) else user
    return user if is_paused(client, user) else None


def paused_users(client: redis.Redis) -> set[str]:
    prefix = PAUSED_KEY.format(user_id="")
    return {key[len(prefix) :] for key in client.scan_iter(match=f"{prefix}*", count=500)}


def publish_status(client: redis.Redis, user_id: str, event: dict[str, Any]) -> None:
    client.publish(STATUS_CHANNEL.format(user_id=user_id), json.dumps({"user_id": user_id, "ts": time.time(), **event}))
