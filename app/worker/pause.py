"""The emergency brake in the worker: a paused user's tasks are held, not started.

The check runs in the worker's main process just before a task goes to the pool (a custom
Request class, Celery's documented extension point), against an in-memory set of paused users
kept current by a pub/sub listener thread — so it costs no Redis round trip per task.

It hooks `revoked()`: Celery wraps the Request class per task and overrides execute_using_pool,
but that override asks `revoked()` first and, on True, frees the pool slot without storing any
state — exactly what holding a message needs.
"""

from __future__ import annotations

import threading
import time

import structlog
from celery.worker import state
from celery.worker.request import Request

from app.core import agents
from app.core.redis import get_redis

log = structlog.get_logger("librarian.worker.pause")

REFRESH_SECONDS = 5.0


class PauseRegistry:
    def __init__(self) -> None:
        self.paused: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="librarian-pause", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = get_redis()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(agents.PAUSE_CHANNEL.format(user_id="*"), agents.RESUME_CHANNEL.format(user_id="*"))
                self.paused = agents.paused_users(client)  # after subscribing: no gap
                log.info("pause listener ready", paused_users=len(self.paused))
                refreshed = time.monotonic()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "pmessage":
                        kind, _, user_id = message["channel"].partition(":")[2].partition(":")
                        (self.paused.add if kind == "pause" else self.paused.discard)(user_id)
                        log.info("agent control", action=kind, user_id=user_id)
                    if time.monotonic() - refreshed > REFRESH_SECONDS:
                        self.paused = agents.paused_users(client)
                        refreshed = time.monotonic()
            except Exception as exc:  # noqa: BLE001 (Redis down or restarted: resubscribe)
                log.warning("pause listener lost redis, retrying", error=type(exc).__name__)
                self._stop.wait(1.0)


registry = PauseRegistry()


class PausableRequest(Request):
    _held = False

    def revoked(self) -> bool:  # private: celery.Request.revoked_before_pool
        if self._held:
            return True
        owner = self._request_dict.get(agents.OWNER_HEADER)  # private: celery.Request._request_dict
        if owner and owner in registry.paused and self._hold(owner):
            return True
        return super().revoked()

    def _hold(self, owner: str) -> bool:
        """Hold the message unless Redis says the user has resumed meanwhile: the in-memory set
        learns of a resume over pub/sub, which can arrive after the released message itself."""
        if not agents.hold_message(get_redis(), owner, self._message._raw):  # private: celery.Request._message
            registry.paused.discard(owner)
            log.info("pause already lifted: task runs", task_id=self.id, owner=owner)
            return False
        self._held = True
        self.acknowledge()
        state.task_ready(self)
        log.info("task held: user paused", task_id=self.id, task_name=self.name, owner=owner)
        return True
