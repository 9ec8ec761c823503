"""The base class of every Librarian task: pausable, and reports progress to its owner."""

from __future__ import annotations

import contextlib
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
