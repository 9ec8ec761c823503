"""The worker's recovery thread: puts back what dead workers held and what was lost in transit.

Every worker runs one, in its main process; a short lock in Redis makes one sweep at a time across
workers (and each message moves in its own atomic script, so two sweeps could not move it twice).
Each tick (every second) it first beats for this worker's incarnation, then:
- messages held unacknowledged by an incarnation that has not beaten for `WORKER_DEAD_AFTER`
  seconds go back to the tail of their queues (app/broker/holders.py): kombu alone leaves them in
  `unacked` until the broker visibility timeout (two hours by default);
- every `BROKER_RECOVERY_GRACE / 3` seconds, journaled messages missing from every queue and from
  `unacked` are republished (app/broker/journal.py, kombu#305).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

import structlog
from redis.exceptions import LockError

from app.broker import holders, journal, keys
from app.observability.metrics import MESSAGES_RECOVERED

log = structlog.get_logger("librarian.broker.recovery")

TICK_SECONDS = 1.0


def task_id_of(raw: bytes | str | None) -> str | None:
    """The Celery task id inside an `unacked` entry, for logs."""
    try:
        message = json.loads(journal.text(raw or b""))[0]
        return str(message["headers"]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def restore_dead_holders(channel: Any, dead_after: float) -> dict[str, list[str]]:
    """Put back every message held by incarnations silent for `dead_after` seconds.
    Returns {incarnation: [task ids put back]}."""
    client = channel.plain_client
    cutoff, dead = holders.dead_incarnations(client, dead_after)
    restored: dict[str, list[str]] = {}
    for incarnation in dead:
        if incarnation == holders.incarnation():
            continue  # this process is alive (a long pause of its own heartbeat thread)
        for tag in holders.held_by(client, incarnation):
            raw = client.hget(channel.unacked_key, tag)
            targets = channel.restore_targets(raw) if raw is not None else []
            if holders.restore(
                client,
                incarnation_id=incarnation,
                tag=tag,
                unacked=channel.unacked_key,
                unacked_index=channel.unacked_index_key,
                targets=targets,
                names=channel.journal_names,
            ):
                restored.setdefault(incarnation, []).append(task_id_of(raw) or tag)
        holders.retire(client, incarnation, cutoff)
    return restored


class Recovery:
    """A daemon thread in the worker's main process, ticking every TICK_SECONDS."""

    def __init__(self, app: Any, *, grace: float, dead_after: float) -> None:
        self.app = app
        self.grace = grace
        self.dead_after = dead_after
        self.lost_interval = max(grace / 3, 0.5)
        self._last_lost_sweep = 0.0
        # Since when this worker has beaten without a gap: it judges others dead only after beating
        # for `dead_after` itself. After a broker outage every worker's last beat is old, and the
        # first to reconnect must not take the others for dead before they could beat again.
        self._beating_since: float | None = None
        self._last_tick = 0.0
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
        while not self._stop.wait(min(TICK_SECONDS, self.lost_interval)):
            try:
                if connection is None:
                    connection = self.app.connection_for_write()
                self.sweep(connection.default_channel)
                if self._failing:
                    log.info("message recovery sweeping again")
                self._failing = False
            except Exception as exc:  # noqa: BLE001 (the broker may be down: try again next tick, on a new connection)
                self._beating_since = None
                if not self._failing:
                    log.warning("message recovery sweep failed", error=type(exc).__name__)
                self._failing = True
                if connection is not None:
                    try:
                        connection.release()
                    except Exception:  # noqa: BLE001 (a broken connection is dropped either way)
                        log.debug("releasing the recovery connection failed")
                connection = None
        if connection is not None:
            connection.release()

    def sweep(self, channel: Any) -> None:
        if not getattr(channel, "journaling", False):
            return  # not our transport (recovery off, a key prefix, another broker)
        me = holders.incarnation()
        if me is not None:  # this worker is alive: beaten where its holder records are, on the broker
            holders.beat(channel.plain_client, me)
        now = time.monotonic()
        if self._beating_since is None or now - self._last_tick > self.dead_after / 2:
            self._beating_since = now  # first beat, or this process was frozen: a gap in its own beats
        self._last_tick = now
        lock = channel.plain_client.lock(
            keys.SWEEP_LOCK, timeout=max(self.lost_interval, TICK_SECONDS) * 2, blocking=False
        )
        if not lock.acquire():
            return  # another worker is sweeping
        try:
            if self.dead_after > 0 and now - self._beating_since >= self.dead_after:
                self._restore_dead(channel)
            if self.grace > 0 and now - self._last_lost_sweep >= self.lost_interval:
                self._last_lost_sweep = now
                self._republish_lost(channel)
        finally:
            with contextlib.suppress(LockError):  # it expired meanwhile
                lock.release()  # redis-py's token check: never another worker's lock

    def _restore_dead(self, channel: Any) -> None:
        restored = restore_dead_holders(channel, self.dead_after)
        if not restored:
            return
        # A process that beats under a newer incarnation is alive: only its lost broker connection's
        # messages came back (app/worker/consumer.py), which is no dying worker.
        client = channel.plain_client
        _, dead = holders.dead_incarnations(client, self.dead_after)
        beating = {journal.text(i) for i in client.zrange(keys.INCARNATIONS, 0, -1)} - set(dead)
        alive = {holders.process_of(i) for i in beating}
        for incarnation, task_ids in restored.items():
            lost_connection = holders.process_of(incarnation) in alive
            MESSAGES_RECOVERED.labels("connection_lost" if lost_connection else "worker_dead").inc(len(task_ids))
            log.warning(
                "put back the messages of a lost broker connection"
                if lost_connection
                else "put back the messages of a dead worker",
                worker=holders.hostname_of(incarnation),
                incarnation=incarnation,
                count=len(task_ids),
                task_ids=task_ids[:50],
                **({} if lost_connection else {"silent_for_more_than_s": self.dead_after}),
            )

    def _republish_lost(self, channel: Any) -> None:
        republished = journal.recover_lost(
            channel.plain_client,
            channel.journal_names,
            unacked=channel.unacked_key,
            queue_keys=channel.queue_keys(),
            grace=self.grace,
        )
        if republished:
            MESSAGES_RECOVERED.labels("lost_in_transit").inc(len(republished))
            log.warning("republished lost task messages", count=len(republished), delivery_tags=republished[:20])


_recovery: Recovery | None = None


def start(app: Any, *, grace: float, dead_after: float) -> None:
    global _recovery
    if (grace > 0 or dead_after > 0) and _recovery is None:
        _recovery = Recovery(app, grace=grace, dead_after=dead_after)
        _recovery.start()


def stop() -> None:
    global _recovery
    if _recovery is not None:
        _recovery.stop()
        _recovery = None
