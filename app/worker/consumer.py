"""Celery's consumer, counting undecodable messages (Celery has no signal for that one case)."""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer


class LibrarianConsumer(Consumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        from app.observability.metrics import TASKS_REJECTED

        TASKS_REJECTED.labels("decode_error").inc()
        super().on_decode_error(message, exc)
