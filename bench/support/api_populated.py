"""`librarian api`, with the task counters of NAMES task names on every queue already in its registry.

    python -m bench.support.api_populated --port P --names 50

One uvicorn process in multiprocess mode, as app.cli.main.cmd_api runs it (its own directory under
VAR_DIR, wiped, set before prometheus_client is imported); the only task family the API itself
increments is librarian_tasks_sent_total, so that is what is filled (NAMES x 4 queues), as if the
API had published every one of those tasks. Then the same uvicorn call as cmd_api.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--names", type=int, default=50)
    args = parser.parse_args()

    import uvicorn

    from app.core.config import QUEUES, settings
    from app.observability.metrics_dir import use_multiprocess_dir

    use_multiprocess_dir((settings.VAR_DIR / "metrics" / f"api-{args.port}").resolve())  # before the next import
    from app.observability import metrics as m
    from app.observability.logging import configure_logging
    from bench.support.populate import task_names

    configure_logging("api")
    for name in task_names(args.names):
        for queue in QUEUES:
            m.TASKS_SENT.labels(name, queue).inc()
    uvicorn.run(
        "app.api.main:app", host=settings.API_HOST, port=args.port, workers=1, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
