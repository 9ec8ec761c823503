"""Per-task cost of Librarian's own worker hooks, in process (no broker, no pool, no Sentry).

    python -m bench.hooks [--tasks 20000] [--repeat 5] [--json PATH]

The end-to-end overhead benchmark (bench/overhead.py) cannot resolve differences of a few
microseconds per task on a shared 2-core machine; this one can. It sends, through Celery's own
signal dispatch, exactly the signals a successful task raises in a prefork worker:
  main process: task_received
  pool child:   task_prerun, task_success, task_postrun
with every receiver Librarian connects (metrics in multiprocess mode into a temp dir, the
structlog JSON task lines written unbuffered to a temp file, Sentry initialised as in a worker
against a local sink (traces sample rate 0.0), the heartbeat's last-task stamp), and reports
microseconds per task: total, split into the main-process and child parts, and per component
(only that component's receivers connected: metrics, logs, Sentry, the worker's own).
Baseline: the same signal sends with no receiver connected (what a bare Celery app pays).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import machine
from tests.utils.sentry_sink import SentrySink

# Receivers by dispatch uid (app/observability/*, app/worker/signals.py).
COMPONENTS = {
    "metrics": "librarian.metrics.",
    "logs": "librarian.logging.",
    "Sentry": "librarian.sentry.",
    "worker (heartbeat, status events, issued ids)": "librarian.worker.",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20000, help="simulated tasks per repeat (default 20000)")
    parser.add_argument("--repeat", type=int, default=5, help="repeats, median taken (default 5)")
    add_json_option(parser)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="librarian-bench-hooks-"))
    sink = SentrySink(parse=False)
    os.environ.update(
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
        LIBRARIAN_PROCESS="worker",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        SENTRY_DSN=sink.dsn,
        SENTRY_TRACES_SAMPLE_RATE="0.0",
        REDIS_URL="redis://127.0.0.1:1/0",
        VAR_DIR=str(tmp / "var"),
        ENVIRONMENT="development",
    )
    (tmp / "metrics").mkdir()
    log_path = tmp / "worker.log"
    # Unbuffered, as PYTHONUNBUFFERED=1 in the image: one write() per line.
    import io

    sys.stdout = io.TextIOWrapper(open(log_path, "wb", buffering=0), write_through=True)  # noqa: SIM115
    try:
        from celery import signals
        from celery.worker.request import Request

        import app.worker.signals as worker_signals
        from app.observability.celery_logging import quiet_celery_task_lines
        from app.observability.sentry import init_sentry
        from app.worker.celery_app import celery_app  # configures logging (LIBRARIAN_PROCESS=worker)
        from app.worker.tasks.diagnostics import health_check

        quiet_celery_task_lines()
        init_sentry("worker")  # as worker_init does

        class _Heartbeat:  # what worker_ready installs; only last_task_at is touched per task
            last_task_at = None

        worker_signals._heartbeat = _Heartbeat()

        def message(task_id: str):  # type: ignore[no-untyped-def]
            from kombu.message import Message

            headers = {
                "lang": "py",
                "task": health_check.name,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "argsrepr": "()",
                "kwargsrepr": "{}",
                "origin": "bench",
                "ignore_result": False,
                "librarian_published_at": time.time(),
            }
            body = ((), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
            return Message(
                body=body,
                headers=headers,
                content_type="application/x-python-serialize",
                content_encoding="binary",
                delivery_info={"exchange": "maintenance", "routing_key": "maintenance"},
                properties={"correlation_id": task_id, "reply_to": ""},
            )

        def run_once(n: int) -> tuple[float, float]:
            ids = [str(uuid.uuid4()) for _ in range(n)]
            requests = [
                Request(message(i), app=celery_app, task=health_check, decoded=True, body=((), {}, {})) for i in ids
            ]
            started = time.process_time()
            for request in requests:
                signals.task_received.send(sender=None, request=request)
            main_part = time.process_time() - started
            started = time.process_time()
            for task_id in ids:
                health_check.push_request(
                    id=task_id,
                    delivery_info={"exchange": "maintenance", "routing_key": "maintenance"},
                    retries=0,
                    hostname="bench@host",
                    librarian_published_at=time.time(),
                    is_eager=False,
                )
                try:
                    signals.task_prerun.send(
                        sender=health_check, task_id=task_id, task=health_check, args=(), kwargs={}
                    )
                    result = {"status": "ok"}
                    signals.task_success.send(sender=health_check, result=result)
                    signals.task_postrun.send(
                        sender=health_check,
                        task_id=task_id,
                        task=health_check,
                        args=(),
                        kwargs={},
                        retval=result,
                        state="SUCCESS",
                    )
                finally:
                    health_check.pop_request()
            child_part = time.process_time() - started
            return main_part * 1e6 / n, child_part * 1e6 / n

        def disconnected():  # type: ignore[no-untyped-def]
            saved = {}
            for sig in (signals.task_received, signals.task_prerun, signals.task_success, signals.task_postrun):
                saved[sig] = list(sig.receivers)
                sig.receivers = []
                sig.sender_receivers_cache.clear()
            return saved

        def reconnect(saved) -> None:  # type: ignore[no-untyped-def]
            for sig, receivers in saved.items():
                sig.receivers = receivers
                sig.sender_receivers_cache.clear()

        def only(prefix: str, saved):  # type: ignore[no-untyped-def]
            """Connect only the receivers whose dispatch uid starts with `prefix`."""
            for sig, receivers in saved.items():
                sig.receivers = [r for r in receivers if str(r[0][0]).startswith(prefix)]
                sig.sender_receivers_cache.clear()

        run_once(2000)  # warm-up: metric files created, caches filled
        bare, lib = [], []
        parts: dict[str, list[tuple[float, float]]] = {name: [] for name in COMPONENTS}
        for _ in range(args.repeat):
            saved = disconnected()
            bare.append(run_once(args.tasks))
            for name, prefix in COMPONENTS.items():
                only(prefix, saved)
                parts[name].append(run_once(args.tasks))
            reconnect(saved)
            lib.append(run_once(args.tasks))
        lines = log_path.read_text().count('"event": "task succeeded"')
    finally:
        sys.stdout.close()
        sys.stdout = sys.__stdout__
        sink.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    def med(values: list[tuple[float, float]], i: int) -> float:
        return statistics.median(v[i] for v in values)

    b_main, b_child = med(bare, 0), med(bare, 1)
    l_main, l_child = med(lib, 0), med(lib, 1)
    print(f"machine: {machine()}")
    print(f"{args.tasks} simulated tasks x {args.repeat} repeats (median); log lines written: {lines}")
    sides = (("no receivers (bare):", b_main, b_child), ("Librarian receivers:", l_main, l_child))
    for label, main_us, child_us in sides:
        total = main_us + child_us
        print(f"  {label:22s} main {main_us:7.1f} us  child {child_us:7.1f} us  total {total:7.1f} us/task")
    print("  per component, only its receivers connected (added to bare):")
    for name in COMPONENTS:
        main_us, child_us = med(parts[name], 0) - b_main, med(parts[name], 1) - b_child
        print(f"    {name:46s} main {main_us:7.1f} us  child {child_us:7.1f} us")
    added = (l_main + l_child) - (b_main + b_child)
    print(
        f"SUMMARY hooks: Librarian's signal receivers add {added:.1f} us per successful task "
        f"(main {l_main - b_main:.1f} us, child {l_child - b_child:.1f} us)"
    )
    write_json(
        args.json,
        "hooks",
        [
            Figure("signal dispatch per successful task", l_main + l_child, "us/task", baseline=b_main + b_child),
            Figure("added by Librarian's receivers", added, "us/task"),
        ],
        args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
