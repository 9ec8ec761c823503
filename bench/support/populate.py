"""Write Librarian's task metrics for many task names into a multiprocess directory, then exit.

    PROMETHEUS_MULTIPROC_DIR=dir python -m bench.support.populate ROLE NAMES [SECONDS]

With SECONDS, it keeps writing every series again and again for that long (every value changes
between two scrapes: the worst case for a scrape, which reuses the text of unchanged series).

The same prometheus_client objects the worker uses (app.observability.metrics), written by a
process of their own, as a prefork worker's processes write them:
  ROLE=main   tasks received, revoked (+ sent: tasks that publish tasks), rejected reasons, unknown
  ROLE=child  tasks started, succeeded, failed (+ 2 exception classes), retried, runtime by each of
              the 4 outcomes, queue wait, active
for NAMES task names on each of the 4 queues (every name on every queue: the worst case).
"""

from __future__ import annotations

import sys


def task_names(count: int) -> list[str]:
    return [f"librarian.bench.task_{i:03d}" for i in range(count)]


def main() -> None:
    role, count = sys.argv[1], int(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    import time

    until = time.monotonic() + seconds
    write(role, count)
    while time.monotonic() < until:
        write(role, count)


def write(role: str, count: int) -> None:
    from app.core.config import QUEUES
    from app.observability import metrics as m

    for name in task_names(count):
        for queue in QUEUES:
            if role == "main":
                m.TASKS_RECEIVED.labels(name, queue).inc()
                m.TASKS_REVOKED.labels(name, queue).inc()
                m.TASKS_SENT.labels(name, queue).inc()
            else:
                m.TASKS_STARTED.labels(name, queue).inc(3)
                m.TASKS_SUCCEEDED.labels(name, queue).inc()
                m.TASKS_RETRIED.labels(name, queue).inc()
                if hasattr(m, "TASK_EXCEPTIONS"):  # failures per task, exception classes apart
                    m.TASKS_FAILED.labels(name, queue).inc(2)
                    for exception in ("ValueError", "TimeoutError"):
                        m.TASK_EXCEPTIONS.labels(name, queue, exception).inc()
                else:  # older layout: the exception class was a label of the failure counter
                    for exception in ("ValueError", "TimeoutError"):
                        m.TASKS_FAILED.labels(name, queue, exception).inc()
                for outcome in m.OUTCOMES:
                    m.TASK_RUNTIME.labels(name, queue, outcome).observe(0.2)
                m.TASK_QUEUE_WAIT.labels(name, queue).observe(0.03)
    if role == "main":
        for reason in m.REJECT_REASONS:
            m.TASKS_REJECTED.labels(reason).inc()
        m.TASKS_UNKNOWN.inc()
    else:
        m.TASKS_ACTIVE.inc()


if __name__ == "__main__":
    main()
