"""The baseline: a bare Celery app with Librarian's configuration and none of its instrumentation.

Its configuration is `app.worker.routing.base_config(settings)`, the one Librarian's app
(app/worker/celery_app.py) starts from: same broker and result backend (`settings.broker_url`,
`settings.result_backend`: REDIS_URL), serialisation, late acks, prefetch 1, retry on a lost
worker, time limits, queues and routes. Its tasks have the same names and bodies as Librarian's
no-op (`librarian.maintenance.health_check`) and demo job, so both workers get identical messages
and write identical results. What it lacks is everything Librarian adds: no publish-journal
transport, no signal handlers (metrics, task log lines), no structlog, no Sentry, no heartbeat
thread, no custom consumer, no pausable Request class (app.worker.base.LibrarianTask), no agent
status events. Celery's default logging stays on (its two INFO lines per task, plain text), as a
bare app would have it. So A/B against it measures everything Librarian adds per task;
bench/hooks.py isolates the observability receivers.

    celery -A bench.baselines.bare_app:app worker --pool prefork --concurrency 2 ...
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from celery import Celery, Task

from app.core.config import settings
from app.worker.routing import base_config

app = Celery("bare", broker=settings.broker_url, backend=settings.result_backend)
app.conf.update(base_config(settings))


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
