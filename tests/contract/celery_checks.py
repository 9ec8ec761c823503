"""What the worker (app/worker/) assumes about Celery's internals, one check per id."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from celery.backends.redis import SentinelBackend
from celery.worker import request, state
from celery.worker.consumer import Consumer

FIX = "update app/worker/ to match (and this check), or pin celery below this version"


def check_request_dict() -> None:
    assert "self._request_dict" in inspect.getsource(request.Request.__init__), (
        f"celery's Request no longer keeps the message headers in `_request_dict`, which the pause brake "
        f"reads the task owner from (app/worker/pause.py); {FIX}"
    )


def check_request_message() -> None:
    source = inspect.getsource(request.Request.__init__)
    assert "self._message = message" in source, (
        f"celery's Request no longer keeps its kombu message as `_message`, whose `_raw` the pause brake "
        f"puts on the hold list; {FIX}"
    )


def check_revoked_before_pool() -> None:
    """The pause brake holds a message by answering True from revoked(): Celery must ask it before
    handing the request to the pool, and free the slot without storing a state."""
    source = inspect.getsource(request.create_request_cls)
    assert "def execute_using_pool" in source and "if self.revoked():" in source, (
        f"celery's per-task Request.execute_using_pool no longer asks revoked() first; {FIX}"
    )
    assert "raise TaskRevokedError" in source, (
        f"celery's execute_using_pool no longer raises TaskRevokedError for a revoked request; {FIX}"
    )


def check_create_task_handler() -> None:
    signature = inspect.signature(Consumer.create_task_handler)
    assert list(signature.parameters) == ["self", "promise"], (
        f"celery's Consumer.create_task_handler{signature} changed; app/worker/consumer.py wraps it; {FIX}"
    )
    for name in ("on_decode_error", "on_invalid_task"):
        assert callable(getattr(Consumer, name, None)), f"celery's Consumer.{name} is gone; {FIX}"


def check_active_requests() -> None:
    assert hasattr(state, "active_requests") and hasattr(state.active_requests, "__len__"), (
        f"celery.worker.state.active_requests is gone: the heartbeat counts a worker's running tasks by it; {FIX}"
    )


def check_sentinel_backend_options() -> None:
    source = inspect.getsource(SentinelBackend._get_sentinel_instance) + inspect.getsource(SentinelBackend._get_pool)
    for option in ("sentinel_kwargs", "master_name"):
        assert f'_transport_options.get("{option}"' in source or f"_transport_options.get('{option}'" in source, (
            f"celery's SentinelBackend no longer reads {option} from result_backend_transport_options: "
            f"app/worker/routing.py sentinel_options passes it; {FIX}"
        )


def check_connection_error_after_connected() -> None:
    signature = inspect.signature(Consumer.on_connection_error_after_connected)
    assert list(signature.parameters) == ["self", "exc"], (
        f"celery's Consumer.on_connection_error_after_connected{signature} changed: app/worker/consumer.py "
        f"starts a new incarnation there after a lost broker connection; {FIX}"
    )
    source = inspect.getsource(Consumer.on_connection_error_after_connected)
    assert "self.connection = self.connection, None" in source or "self.connection = None" in source, (
        f"celery's Consumer no longer drops its connection on a connection error; {FIX}"
    )


CHECKS: dict[str, Callable[[], None]] = {
    "celery.Consumer.on_connection_error_after_connected": check_connection_error_after_connected,
    "celery.SentinelBackend.transport_options": check_sentinel_backend_options,
    "celery.Request._request_dict": check_request_dict,
    "celery.Request._message": check_request_message,
    "celery.Request.revoked_before_pool": check_revoked_before_pool,
    "celery.Consumer.create_task_handler": check_create_task_handler,
    "celery.worker.state.active_requests": check_active_requests,
}
