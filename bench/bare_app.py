"""The baseline: a bare Celery app with Librarian's settings and none of its instrumentation.

Same broker and result backend (REDIS_URL), same serialisation, late acks, prefetch 1, time
limits, queues and routes as app/worker/celery_app.py, and tasks with the same names and bodies
as Librarian's no-op (`librarian.maintenance.health_check`) and demo job, so both workers get
identical messages and write identical results. What it lacks is everything Librarian adds: no
signal handlers (metrics, task log lines), no structlog, no Sentry, no heartbeat thread, no custom
consumer, no pausable Request class (app.worker.base.LibrarianTask), no agent status events.
Celery's default logging stays on (its two INFO lines per task, plain text), as a bare app would
have it. So A/B against it measures everything Librarian adds per task; bench/hooks.py isolates
the observability receivers.

    celery -A bench.bare_app:app worker --pool prefork --concurrency 2 ...
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from celery import Celery, Task
from kombu import Exchange, Queue

QUEUES = ("default", "validation", "pipeline", "maintenance")
ROUTES = {
    "librarian.validation.*": {"queue": "validation"},
    "librarian.pipeline.*": {"queue": "pipeline"},
    "librarian.maintenance.*": {"queue": "maintenance"},
    "librarian.*": {"queue": "default"},
}
URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6399/0"
VISIBILITY_TIMEOUT = int(os.environ.get("BROKER_VISIBILITY_TIMEOUT", 7200))
SOCKET_TIMEOUT = float(os.environ.get("REDIS_SOCKET_TIMEOUT", 2.0))

app = Celery("bare", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    event_serializer="json",
    timezone="UTC",
    enable_utc=True,
    task_track_started=True,
    task_soft_time_limit=int(os.environ.get("TASK_SOFT_TIME_LIMIT", 1500)),
    task_time_limit=int(os.environ.get("TASK_TIME_LIMIT", 1800)),
    worker_prefetch_multiplier=1,
    worker_max_memory_per_child=int(os.environ.get("WORKER_MAX_MEMORY_PER_CHILD_MB", 1024)) * 1024,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    result_expires=int(os.environ.get("RESULT_EXPIRES", 3600)),
    result_extended=True,
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=float(os.environ.get("SUBMIT_TIMEOUT", 2.0)),
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "socket_timeout": 10,
        "retry_on_timeout": True,
    },
    redis_socket_connect_timeout=SOCKET_TIMEOUT,
    redis_socket_timeout=5,
    redis_retry_on_timeout=True,
    result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_queue="default",
    task_routes=ROUTES,
    task_send_sent_event=False,
    worker_send_task_events=False,
)


@app.task(bind=True, name="librarian.maintenance.health_check", max_retries=0)
def health_check(self: Task) -> dict:
    return {
        "status": "ok",
        "worker": self.request.hostname,
        "task_id": self.request.id,
        "timestamp": datetime.now(UTC).isoformat(),
    }


@app.task(bind=True, name="librarian.demo.process")
def demo_process(self: Task, message: str, steps: int = 5, step_seconds: float = 0.2) -> dict:
    for step in range(1, steps + 1):
        time.sleep(step_seconds)
        percent = int(step * 100 / steps)
        self.update_state(
            state="PROGRESS",
            meta={"percent": percent, "message": f"step {step}/{steps}: {message}"},
        )
    return {"message": message, "steps": steps, "processed_at": datetime.now(UTC).isoformat()}
