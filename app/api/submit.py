"""Publishing tasks from the API: fail fast (503) when the broker is down instead of blocking ~20 s."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import redis
from celery import Celery
from celery.canvas import Signature
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from app.broker.keys import ISSUED_HEADER as ISSUED
from app.broker.keys import OWNER_HEADER
from app.broker.transport import NotReplicated
from app.core.errors import DependencyUnavailable
from app.core.task_registry import forget_issued, record_issued

PUBLISH_ERRORS = (KombuOperationalError, RedisError, OSError)


@dataclass(frozen=True)
class Message:
    """One task message: its name, arguments and publish options (headers, queue, chain, ...)."""

    name: str
    args: tuple | list | None = None
    kwargs: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    task_id: str = field(default_factory=lambda: str(uuid4()))

    @classmethod
    def chain(cls, steps: Sequence[Signature], *, task_id: str | None = None) -> Message:
        """The first step, carrying the later ones in its `chain` (Celery's message protocol v2:
        in reverse order; the worker publishes the next step when one succeeds). One message, as
        `chain(...).apply_async()` sends."""
        first, rest = steps[0], steps[1:]
        options = {**first.options, "chain": list(reversed(rest))} if rest else dict(first.options)
        return cls(first.task, args=first.args, kwargs=first.kwargs, options=options, task_id=task_id or str(uuid4()))


def submit(
    celery: Celery,
    client: redis.Redis,
    name: str,
    *,
    args: tuple | list | None = None,
    kwargs: dict[str, Any] | None = None,
    task_id: str | None = None,
    **options: Any,
) -> str:
    """Record the id as issued, then publish once without Celery's blocking publish retry."""
    message = Message(name, args=args, kwargs=kwargs, options=options, task_id=task_id or str(uuid4()))
    (sent,) = submit_many(celery, client, [message])
    return sent


def submit_many(celery: Celery, client: redis.Redis, messages: Sequence[Message]) -> Iterator[str]:
    """Record every id as issued (one round trip), then publish the messages in order on one
    producer, without Celery's blocking publish retry; yields each id once its message is out.

    At the first failure the ids not sent are forgotten and DependencyUnavailable is raised: the
    messages before it stay sent, so count what was yielded."""
    if not messages:
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            for message in messages:
                owner = (message.options.get("headers") or {}).get(OWNER_HEADER)
                record_issued(pipe, message.task_id, message.name, owner)
            pipe.execute()
    except RedisError as exc:
        raise DependencyUnavailable("redis", type(exc).__name__) from exc
    sent = 0
    try:
        with celery.producer_or_acquire() as producer:
            for message in messages:
                celery.send_task(
                    message.name,
                    args=message.args,
                    kwargs=message.kwargs,
                    task_id=message.task_id,
                    producer=producer,
                    retry=False,
                    **{**message.options, "headers": {**(message.options.get("headers") or {}), ISSUED: "1"}},
                )
                sent += 1
                yield message.task_id
    except NotReplicated as exc:
        # Queued on the primary but on no replica (REDIS_PUBLISH_WAIT_REPLICAS): not acknowledged,
        # yet it runs unless a failover loses it, so its id stays issued (GET /tasks/{id} answers).
        sent += 1
        raise DependencyUnavailable("redis", "NotReplicated") from exc
    except PUBLISH_ERRORS as exc:
        raise DependencyUnavailable("redis", type(exc).__name__) from exc
    finally:
        if sent < len(messages):  # a failure, or the caller stopped early
            _forget(client, messages[sent:])


def _forget(client: redis.Redis, messages: Sequence[Message]) -> None:
    try:
        with client.pipeline(transaction=False) as pipe:
            for message in messages:
                forget_issued(pipe, message.task_id)
            pipe.execute()
    except RedisError:
        pass  # the keys expire with the result TTL anyway
