"""The baseline API: a bare FastAPI app around bench/baselines/bare_app.py's Celery app, no instrumentation.

    python -m bench.baselines.bare_api --port 8001     (REDIS_URL from the environment)

POST /submit                  celery.send_task of the demo job (what Librarian's POST /api/v1/tasks/test
                              publishes), answers {task_id, status, message}
GET  /tasks/{id}              the task's state from the result backend
GET  /health-check/celery-ping   the usual "are workers alive" check: control.ping(timeout=1.0),
                              or, with ?limit=N, returning as soon as N workers replied
GET  /ok                      readiness

Served by uvicorn exactly as `librarian api` serves Librarian (one process, uvicorn's default
loop and HTTP parser), with access logging off: the baseline pays for no log line at all.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Annotated

from celery.result import AsyncResult
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from bench.baselines.bare_app import app as celery

api = FastAPI(title="bare")


@api.get("/ok")
def ok() -> dict:
    return {"ok": True}


@api.post("/submit", status_code=202)
def submit(message: str = "Hello", steps: int = 5) -> dict:
    task_id = str(uuid.uuid4())
    celery.send_task("librarian.demo.process", kwargs={"message": message, "steps": steps}, task_id=task_id)
    return {"task_id": task_id, "status": "PENDING", "message": f"task queued: {message}"}


@api.get("/tasks/{task_id}")
def status(task_id: str) -> dict:
    return {"task_id": task_id, "status": AsyncResult(task_id, app=celery).state}


@api.get("/health-check/celery-ping")
def celery_ping(
    timeout: Annotated[float, Query(gt=0, le=10)] = 1.0, limit: Annotated[int | None, Query(ge=1)] = None
) -> JSONResponse:
    replies = celery.control.ping(timeout=timeout, limit=limit) or []
    workers = sorted(name for reply in replies for name in reply)
    return JSONResponse(
        {"status": "ok" if workers else "down", "workers": workers}, status_code=200 if workers else 503
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(api, host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
