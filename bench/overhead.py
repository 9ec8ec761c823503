"""Worker overhead: no-op task throughput, fully instrumented Librarian worker vs a bare Celery app.

    python -m bench.overhead [--tasks 3000] [--rounds 2] [--variants plain,events]
                             [--traces-sample-rate 0.0] [--bare-loglevel INFO] [--no-sentry] [--json PATH]

A = bare: bench/baselines/bare_app.py (same settings, same task name and body, no instrumentation), run with
    the same celery command line `librarian worker` execs (prefork, concurrency 2, all queues,
    --without-mingle --without-gossip, --statedb, --loglevel INFO).
B = Librarian: `librarian worker` as deployed: metrics in multiprocess mode, JSON logs (to a
    file), Sentry pointed at a local sink (traces sample rate 0.0 unless told), heartbeats on.

Each round, for each of A and B (order alternates per round, so drift and warm-up cancel out):
  1. empty the broker (FLUSHALL), publish N no-op tasks (`librarian.maintenance.health_check`)
     with the worker stopped; B's messages are published through Librarian's Celery app (its
     before_task_publish handler stamps the publish time, as the API does), A's through the bare
     app with that handler disconnected;
  2. start the worker, wait until every result is SUCCESS in the backend, stop the worker.
Throughput is the DRAIN RATE read from the result backend: (completions - 1) / (date_done of the
last - date_done of the first), skipping the first 2 % of completions (worker warm-up). Worker
start-up, publish time and polling are outside the timed window; both sides are timed by the same
clock (date_done, written by the pool child when it stores the result).
Variant "events" passes -E (worker_send_task_events) to both workers; nothing consumes the events.
Ratio = median throughput of B / median of A (target >= 0.97). Because the machine may be shared,
each run also reports the worker's CPU per task (main process + pool children, /proc, from worker
ready to drained) and the CPU used meanwhile by processes outside the benchmark ("foreign load",
in cores): CPU per task barely moves with contention, throughput does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import CpuWindow, Stack, machine, table, wait_ids_done
from tests.utils.sentry_sink import SentrySink

TASK = "librarian.maintenance.health_check"
TARGET = 0.97


def publish(app, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with app.producer_or_acquire() as producer:
        for task_id in ids:
            app.send_task(TASK, task_id=task_id, producer=producer)
    return ids


def drain_rate(client, ids: list[str], skip_fraction: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(tasks/s over the steady part, seconds from first to last completion)."""
    done: list[float] = []
    for start in range(0, len(ids), 1000):
        keys = [f"celery-task-meta-{i}" for i in ids[start : start + 1000]]
        for raw in client.mget(keys):
            meta = json.loads(raw)
            assert meta["status"] == "SUCCESS", meta
            done.append(datetime.fromisoformat(meta["date_done"]).timestamp())
    done.sort()
    skip = int(len(done) * skip_fraction)
    span = done[-1] - done[skip]
    return (len(done) - 1 - skip) / span, done[-1] - done[0]


def count_lines(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except FileNotFoundError:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per worker run (default 3000)")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds per variant, order alternating (default 2)")
    parser.add_argument("--variants", default="plain,events", help="plain and/or events (-E); default both")
    parser.add_argument(
        "--traces-sample-rate", default="0.0", help="Librarian's SENTRY_TRACES_SAMPLE_RATE (default 0.0)"
    )
    parser.add_argument("--bare-loglevel", default="INFO", help="bare worker's --loglevel (default INFO, as Librarian)")
    parser.add_argument(
        "--no-sentry", action="store_true", help="Librarian without SENTRY_DSN (to isolate Sentry's share)"
    )
    parser.add_argument("--skip-fraction", type=float, default=0.02, help="completions ignored at the start (warm-up)")
    parser.add_argument("--timeout", type=float, default=600.0, help="max seconds to drain one run")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for inspection")
    add_json_option(parser)
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    sink = SentrySink(parse=False)
    stack = Stack("overhead", keep=args.keep)
    try:
        stack.export(SENTRY_DSN=sink.dsn, SENTRY_TRACES_SAMPLE_RATE=args.traces_sample_rate)
        stack.start_valkey()
        client = stack.redis()
        valkey_pid = stack.server._process.pid

        from celery import signals

        from app.observability.celery_metrics import _on_publish
        from app.worker.celery_app import celery_app as librarian_app
        from bench.baselines.bare_app import app as bare_app

        lib_env = stack.env(
            SENTRY_DSN="" if args.no_sentry else sink.dsn, SENTRY_TRACES_SAMPLE_RATE=args.traces_sample_rate
        )
        bare_env = stack.env(LOG_LEVEL=args.bare_loglevel)

        def one_run(kind: str, variant: str, label: str) -> dict:
            client.flushall()
            extra = ("-E",) if variant == "events" else ()
            if kind == "bare":
                signals.before_task_publish.disconnect(_on_publish)
                try:
                    ids = publish(bare_app, args.tasks)
                finally:
                    signals.before_task_publish.connect(_on_publish)
            else:
                ids = publish(librarian_app, args.tasks)
            sink_before = sink.snapshot()
            started = time.perf_counter()
            if kind == "bare":
                worker = stack.start_bare_worker(label, {**bare_env}, *extra)
            else:
                worker = stack.start_librarian_worker(label, {**lib_env}, *extra)
            ready = time.perf_counter()
            window = CpuWindow({"worker": worker.pid, "valkey": valkey_pid}, singles={"main": worker.pid})
            try:
                if not wait_ids_done(client, ids, timeout=args.timeout):
                    raise RuntimeError(f"{label}: not drained within {args.timeout}s:\n{worker.tail()}")
                drained = time.perf_counter()
                cpu = window.stop()
                metrics_ok = None
                if kind == "librarian":
                    from tests.utils.metrics import scrape, value

                    samples = scrape(worker.metrics_url)  # type: ignore[attr-defined]
                    metrics_ok = int(value(samples, "librarian_tasks_succeeded_total", task=TASK))
            finally:
                stack.stop(worker)
            rate, span = drain_rate(client, ids, args.skip_fraction)
            envelopes = sink.snapshot()[0] - sink_before[0]
            logged = count_lines(worker.log_path, '"event": "task succeeded"') if kind == "librarian" else None
            return {
                "variant": variant,
                "kind": kind,
                "label": label,
                "rate": rate,
                "span": span,
                "startup": ready - started,
                "drain_wall": drained - started,
                "metric_succeeded": metrics_ok,
                "log_succeeded": logged,
                "envelopes": envelopes,
                "cpu_ms": cpu["worker"] * 1000 / args.tasks,
                "main_ms": cpu["main"] * 1000 / args.tasks,
                "valkey_ms": cpu["valkey"] * 1000 / args.tasks,
                "foreign": cpu["foreign"] / (drained - ready),
            }

        results: list[dict] = []
        print(f"machine: {machine()}")
        print(
            f"{args.tasks} no-op tasks per run, {args.rounds} A/B rounds per variant, variants {variants}, "
            "Librarian Sentry "
            f"{'OFF' if args.no_sentry else 'on, SENTRY_TRACES_SAMPLE_RATE=' + args.traces_sample_rate}, "
            f"bare --loglevel {args.bare_loglevel}"
        )
        for variant in variants:
            for r in range(args.rounds):
                order = ("bare", "librarian") if r % 2 == 0 else ("librarian", "bare")
                for kind in order:
                    res = one_run(kind, variant, f"{kind}-{variant}-{r}")
                    results.append(res)
                    extra = ""
                    if kind == "librarian":
                        extra = (
                            f"  metrics succeeded={res['metric_succeeded']} log lines={res['log_succeeded']}"
                            f" sentry envelopes={res['envelopes']}"
                        )
                    print(
                        f"  [{variant} r{r}] {kind:9s} {res['rate']:7.1f} tasks/s"
                        f"  worker CPU {res['cpu_ms']:.2f} ms/task"
                        f" (main {res['main_ms']:.2f}, pool {res['cpu_ms'] - res['main_ms']:.2f})"
                        f"  valkey {res['valkey_ms']:.2f} ms/task  foreign load {res['foreign']:.2f} cores"
                        f"  (first→last {res['span']:.2f} s, worker start {res['startup']:.1f} s){extra}",
                        flush=True,
                    )

        print()
        rows = []
        verdicts = []
        figures: list[Figure] = []
        for variant in variants:
            pick = [r for r in results if r["variant"] == variant]
            bare = [r["rate"] for r in pick if r["kind"] == "bare"]
            lib = [r["rate"] for r in pick if r["kind"] == "librarian"]
            bare_cpu = statistics.median(r["cpu_ms"] for r in pick if r["kind"] == "bare")
            lib_cpu = statistics.median(r["cpu_ms"] for r in pick if r["kind"] == "librarian")
            ratio = statistics.median(lib) / statistics.median(bare)
            split = {
                kind: (
                    statistics.median(r["main_ms"] for r in pick if r["kind"] == kind),
                    statistics.median(r["cpu_ms"] - r["main_ms"] for r in pick if r["kind"] == kind),
                )
                for kind in ("bare", "librarian")
            }
            verdicts.append((variant, ratio, bare_cpu / lib_cpu))
            figures += [
                Figure(f"{variant}: instrumented / bare throughput", ratio, "ratio", target=(">=", TARGET)),
                Figure(f"{variant}: throughput", statistics.median(lib), "tasks/s", baseline=statistics.median(bare)),
                Figure(f"{variant}: worker CPU per task", lib_cpu, "ms/task", baseline=bare_cpu),
            ]
            rows.append(
                [
                    variant,
                    " ".join(f"{x:.0f}" for x in bare),
                    f"{statistics.median(bare):.1f}",
                    " ".join(f"{x:.0f}" for x in lib),
                    f"{statistics.median(lib):.1f}",
                    f"{ratio:.3f}",
                    f"{bare_cpu:.2f}",
                    f"{lib_cpu:.2f}",
                    f"{bare_cpu / lib_cpu:.3f}",
                    f"{split['bare'][0]:.2f} / {split['bare'][1]:.2f}",
                    f"{split['librarian'][0]:.2f} / {split['librarian'][1]:.2f}",
                    f"{statistics.median(r['foreign'] for r in pick):.2f}",
                ]
            )
        print(
            "throughput in tasks/s (drain rate); CPU in ms per task, worker main process + pool children"
            " (and split: main process / pool children)"
        )
        print(
            table(
                [
                    "variant",
                    "bare per round",
                    "bare median",
                    "librarian per round",
                    "librarian median",
                    "ratio",
                    "bare CPU",
                    "librarian CPU",
                    "CPU ratio (bare/lib)",
                    "bare main / pool",
                    "librarian main / pool",
                    "foreign load",
                ],
                rows,
            )
        )
        for r in results:
            if r["kind"] == "librarian" and (r["metric_succeeded"] != args.tasks or r["log_succeeded"] != args.tasks):
                print(
                    f"WARNING {r['label']}: metrics={r['metric_succeeded']} log lines={r['log_succeeded']} "
                    f"(expected {args.tasks}): instrumentation did not see every task"
                )
        parts = ", ".join(f"{v} {ratio:.3f} (CPU/task ratio {cpu:.3f})" for v, ratio, cpu in verdicts)
        ok = all(ratio >= TARGET for _, ratio, _ in verdicts)
        print(
            f"SUMMARY overhead: instrumented/bare no-op throughput (median of {args.rounds}, {args.tasks} tasks): "
            f"{parts}; target >= {TARGET}: {'PASS' if ok else 'MISS'}"
        )
        write_json(args.json, "overhead", figures, args)
        return 0
    finally:
        stack.close()
        sink.close()


if __name__ == "__main__":
    sys.exit(main())
