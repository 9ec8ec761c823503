"""The worker side of the publish journal: a thread that republishes task messages lost in transit.

Every worker runs it; a short lock in Redis makes one sweep at a time. See app/worker/transport.py
for why the journal exists and how a message is judged lost.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from app.core.config import settings

log = structlog.get_logger("librarian.worker.recovery")

LOCK_KEY = "librarian:journal:sweep-lock"


class LostMessageRecovery:
    """A daemon thread in the worker's main process sweeping the journal every `grace / 3` seconds."""

    def __init__(self, app: Any, grace: float) -> None:
        self.app = app
        self.grace = grace
        self.interval = max(grace / 3, 0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="librarian-recovery", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        connection = None
        while not self._stop.wait(self.interval):
            try:
                if connection is None:
                    connection = self.app.connection_for_write()
                self.sweep(connection.default_channel)
                if self._failing:
                    log.info("lost-message recovery sweeping again")
                self._failing = False
            except Exception as exc:  # the broker may be down: try again next round, on a new connection
                if not self._failing:
                    log.warning("lost-message recovery sweep failed", error=type(exc).__name__)
                self._failing = True
                if connection is not None:
                    try:
                        connection.release()
                    except Exception:
                        pass
                connection = None
        if connection is not None:
            connection.release()

    def sweep(self, channel: Any) -> list[str]:
        if not getattr(channel, "journaling", False):
            return []  # not the journaling transport (BROKER_RECOVERY_GRACE=0, a key prefix, another broker)
        from redis.exceptions import LockError

        lock = channel.plain_client.lock(LOCK_KEY, timeout=self.interval * 2, blocking=False)
        if not lock.acquire():
            return []  # another worker is sweeping
        try:
            republished = channel.recover_lost_messages(self.grace)
        finally:
            try:
                lock.release()  # redis-py's token check: never another worker's lock
            except LockError:
                pass  # it expired meanwhile
        if republished:
            from app.observability.metrics import MESSAGES_RECOVERED

            MESSAGES_RECOVERED.inc(len(republished))
            log.warning("republished lost task messages", count=len(republished), delivery_tags=republished[:20])
        return republished


_recovery: LostMessageRecovery | None = None


def start(app: Any) -> None:
    global _recovery
    if settings.BROKER_RECOVERY_GRACE > 0 and _recovery is None:
        _recovery = LostMessageRecovery(app, settings.BROKER_RECOVERY_GRACE)
        _recovery.start()


def stop() -> None:
    global _recovery
    if _recovery is not None:
        _recovery.stop()
        _recovery = None
