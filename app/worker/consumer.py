"""Celery's consumer, hardened against hostile messages.

- An undecodable body is counted (Celery has no signal for that one case).
- A body that decodes but is not a task message (e.g. JSON that is not [args, kwargs, embed])
  makes Celery's handler raise and the worker die; it is refused as invalid instead.
- A body over MAX_MESSAGE_BYTES is refused without being decoded or run.
- A lost broker connection (an outage, a Sentinel failover) starts a new incarnation
  (app/broker/holders.py): what the old connection took and could not acknowledge stays in
  `unacked` under the old one, which stops beating, so the dead-holder sweep puts it back after
  WORKER_DEAD_AFTER instead of the broker visibility timeout (two hours by default).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from vine import promise

from app.broker import holders
from app.core.config import settings
from app.observability.metrics import TASKS_REJECTED

logger = logging.getLogger("librarian.worker.consumer")


class LibrarianConsumer(Consumer):
    # private: celery.Consumer.on_connection_error_after_connected
    def on_connection_error_after_connected(self, exc: Exception) -> None:
        super().on_connection_error_after_connected(exc)
        previous = holders.incarnation()
        if previous is not None:
            current = holders.start_incarnation(self.hostname)
            logger.warning(
                "broker connection lost: messages held by %s go back after WORKER_DEAD_AFTER; now %s", previous, current
            )

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
