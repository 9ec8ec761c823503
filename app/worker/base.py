"""The base class of every Librarian task: pausable, and reports progress to its owner."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from celery import Task

from app.core import agents
from app.core.redis import get_redis


class LibrarianTask(Task):
    Request = "app.worker.pause:PausableRequest"

    @property
    def owner(self) -> str | None:
        request = self.request
        return getattr(request, agents.OWNER_HEADER, None) or (request.headers or {}).get(agents.OWNER_HEADER)

    def report_progress(self, percent: int, **meta: Any) -> None:
        """PROGRESS state for the task API, and a status event for the owner's listeners."""
        self.update_state(state="PROGRESS", meta={"percent": percent, **meta})
        owner = self.owner
        if owner:
            with contextlib.suppress(Exception):  # an event listener is best effort; the task goes on
                agents.publish_status(
                    get_redis(),
                    owner,
                    {
                        "event": "progress",
                        "task_id": self.request.id,
                        "task_name": self.name,
                        "percent": percent,
                        **meta,
                    },
                )


class ProgressThrottle:
    """Forwards a progress step when its stage changes, at 100 %, or once `min_interval` seconds have
    passed since the last one forwarded. Each report costs five Redis commands (the PROGRESS state
    and the owner's status event), and the engine reports up to 100 steps per model: unthrottled,
    that was three quarters of a small model's broker traffic (docs/scaling.md)."""

    def __init__(
        self,
        report: Callable[[int, str], None],
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._report = report
        self._min_interval = min_interval
        self._clock = clock
        self._stage: str | None = None
        self._sent_at = -float("inf")

    def __call__(self, percent: int, stage: str) -> None:
        now = self._clock()
        if stage == self._stage and percent < 100 and now - self._sent_at < self._min_interval:
            return
        self._stage, self._sent_at = stage, now
        self._report(percent, stage)
