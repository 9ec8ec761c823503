"""Celery's consumer, hardened against hostile messages.

- An undecodable body is counted (Celery has no signal for that one case).
- A body that decodes but is not a task message (e.g. JSON that is not [args, kwargs, embed])
  makes Celery's handler raise and the worker die; it is refused as invalid instead.
- A body over MAX_MESSAGE_BYTES is refused without being decoded or run.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from vine import promise

from app.core.config import settings
from app.observability.metrics import TASKS_REJECTED

logger = logging.getLogger("librarian.worker.consumer")


class LibrarianConsumer(Consumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        TASKS_REJECTED.labels("decode_error").inc()
        super().on_decode_error(message, exc)

    def create_task_handler(self, promise: Any = promise) -> Any:  # private: celery.Consumer.create_task_handler
        handler = super().create_task_handler(promise)
        limit = settings.MAX_MESSAGE_BYTES

        def on_task_received(message: Any) -> Any:
            body = getattr(message, "body", b"") or b""
            if len(body) > limit:
                TASKS_REJECTED.labels("oversize").inc()
                logger.error("message refused: %d bytes is over MAX_MESSAGE_BYTES=%d", len(body), limit)
                message.reject_log_error(logger, self.connection_errors)
                return None
            try:
                return handler(message)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                # Counted as "invalid" through Celery's task_rejected signal.
                return self.on_invalid_task(None, message, exc)

        return on_task_received
