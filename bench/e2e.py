"""End to end through real processes: submit latency under a fixed offered rate, submit→SUCCESS latency.

    python -m bench.e2e [--rate 200] [--duration 20] [--latency-tasks 300] [--http-tasks 100] [--json PATH]

Processes (all started here, on free ports, stopped at the end): one embedded Valkey; Librarian's
API (`librarian api`) and worker (`librarian worker`) on Redis db 0, both with Sentry pointed at a
local sink (SENTRY_TRACES_SAMPLE_RATE 0.0 unless told), JSON logs to files; the baseline, a bare
FastAPI app (bench/baselines/bare_api.py) and a bare Celery worker (bench/baselines/bare_app.py, same
settings and task bodies) on db 1 of the same server, so both stacks run side by side and can be
interleaved.

1. submit→SUCCESS latency of a no-op task (`librarian.maintenance.health_check`), one task at a
   time, Librarian and bare alternating task by task. The API has no no-op submit endpoint (its
   POST /api/v1/tasks/test job sleeps 0.2 s per step), so the task is submitted in this process:
   Librarian's with the API's own `app.api.submit.submit` (records the id, publishes through
   Librarian's Celery app, its signals included), the bare one with `send_task`. Two views:
   a. backend: until AsyncResult.get() returns (Celery's Redis backend pushes the result over
      pub/sub, so there is no polling delay in this number);
   b. HTTP: until GET /api/v1/tasks/{id} (bare: GET /tasks/{id}) says SUCCESS, polling every 2 ms
      over one keep-alive connection: what an HTTP client can see at best.
2. API submit latency at a fixed OFFERED rate (open loop, bench/support/load.py): POST
   /api/v1/tasks/test?message=x&steps=1 on Librarian vs POST /submit?message=x&steps=1 on the bare
   API, --rate requests/s for --duration s each, after a 2 s warm-up at the same rate; latency from
   each request's due time to the last byte of its answer. Workers keep running (as deployed);
   the queues are emptied after each run.
Targets: submit p99 <= 25 ms at 200 req/s; submit→SUCCESS p50 <= 30 ms.

Saturation mode (--saturate [--api-workers-list 1,2] [--concurrency 32] [--duration 20]
[--result-tasks 2000]): Librarian only (no bare stack), one worker, and for each N in the list a
fresh `librarian api --workers N`:
  a. submit saturation: a closed loop of --concurrency clients (one keep-alive connection each,
     next request as soon as the answer is in) on POST /api/v1/tasks/test?message=x&steps=1 for
     --duration s after a 2 s warm-up; 2xx answers/s, errors, API CPU per request, machine CPU;
  b. submit latency at --sat-fraction (0.8) of that rate: the open loop of section 2;
  c. submit→SUCCESS throughput: --result-tasks no-op tasks submitted as fast as --submit-threads
     threads go, with the API's own `app.api.submit.submit` in this process (as in section 1:
     the API has no no-op endpoint, and its demo job sleeps 0.2 s per step, which would cap the
     HTTP path at WORKER_CONCURRENCY / 0.2 s = 10 tasks/s), until every result is SUCCESS in the
     backend: tasks/s. The API is not in this path (same worker for every N): the whole path
     through HTTP gives at most min(a, c).
Goal: submit p99 <= 25 ms at 80 % of the saturation rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import CpuWindow, Stack, machine, summary, table, wait_ids_done
from bench.support.load import LoadResult, run_closed_loop, run_open_loop
from tests.utils.sentry_sink import SentrySink

NOOP = "librarian.maintenance.health_check"
SUBMIT_P99_TARGET_MS = 25.0
RESULT_P50_TARGET_MS = 30.0


def ms(values: list[float]) -> dict[str, float]:
    return {k: (v * 1000 if k != "n" else v) for k, v in summary(values).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="offered submit rate, requests/s (default 200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per submit run (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="submit runs per API, alternating (default 1)")
    parser.add_argument("--latency-tasks", type=int, default=300, help="no-op tasks per side, backend view")
    parser.add_argument("--http-tasks", type=int, default=100, help="no-op tasks per side, HTTP polling view")
    parser.add_argument("--traces-sample-rate", default="0.0", help="Librarian's SENTRY_TRACES_SAMPLE_RATE")
    parser.add_argument("--api-workers", type=int, default=1, help="`librarian api --workers N` (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--saturate", action="store_true", help="saturation mode (see above) instead of 1-2")
    parser.add_argument("--api-workers-list", default="1,2", help="--saturate: values of N (default 1,2)")
    parser.add_argument("--concurrency", type=int, default=32, help="--saturate: closed-loop clients (default 32)")
    parser.add_argument("--sat-fraction", type=float, default=0.8, help="--saturate: open-loop rate / saturation")
    parser.add_argument("--result-tasks", type=int, default=2000, help="--saturate: no-op tasks in the burst")
    parser.add_argument("--submit-threads", type=int, default=4, help="--saturate: threads submitting the burst")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.saturate:
        return saturate(args)

    sink = SentrySink(parse=False)
    stack = Stack("e2e", keep=args.keep)
    lib_url = stack.redis_url
    bare_url = stack.redis_url.rsplit("/", 1)[0] + "/1"
    try:
        sentry = {"SENTRY_DSN": sink.dsn, "SENTRY_TRACES_SAMPLE_RATE": args.traces_sample_rate}
        stack.export(**sentry)
        stack.start_valkey()
        lib_env = stack.env(**sentry)
        bare_env = stack.env(REDIS_URL=bare_url)
        print(f"machine: {machine()}")
        print("starting Librarian worker + API (db 0) and bare worker + API (db 1) ...", flush=True)
        lib_worker = stack.start_librarian_worker("lib-worker", lib_env)
        bare_worker = stack.start_bare_worker("bare-worker", bare_env)
        lib_api, lib_base = stack.start_api("lib-api", lib_env, workers=args.api_workers)
        bare_api, bare_base = stack.start_bare_api("bare-api", bare_env)

        import httpx
        from celery import signals
        from celery.result import AsyncResult

        import bench.baselines.bare_app as bare_mod
        from app.api.submit import submit
        from app.core.redis import get_redis
        from app.observability.celery_metrics import _on_publish
        from app.worker.celery_app import celery_app

        bare_celery = bare_mod.app
        bare_celery.conf.broker_url = bare_url  # this process exported db 0 before importing it
        bare_celery.conf.result_backend = bare_url
        redis_lib = get_redis()

        def submit_lib() -> str:
            return submit(celery_app, redis_lib, NOOP)

        def submit_bare() -> str:
            signals.before_task_publish.disconnect(_on_publish)
            try:
                return bare_celery.send_task(NOOP).id
            finally:
                signals.before_task_publish.connect(_on_publish)

        # -- 1a. submit→SUCCESS, backend view ------------------------------------------------------
        for _ in range(20):  # warm-up: connections, result consumers, pool children
            AsyncResult(submit_lib(), app=celery_app).get(timeout=10)
            AsyncResult(submit_bare(), app=bare_celery).get(timeout=10)
        backend = {"bare": [], "librarian": []}
        for i in range(args.latency_tasks):
            for kind in ("bare", "librarian") if i % 2 == 0 else ("librarian", "bare"):
                started = time.perf_counter()
                if kind == "librarian":
                    AsyncResult(submit_lib(), app=celery_app).get(timeout=10)
                else:
                    AsyncResult(submit_bare(), app=bare_celery).get(timeout=10)
                backend[kind].append(time.perf_counter() - started)

        # -- 1b. submit→SUCCESS, HTTP polling view ----------------------------------------------------
        http_view = {"bare": [], "librarian": []}
        with (
            httpx.Client(base_url=lib_base, timeout=10) as lib_http,
            httpx.Client(base_url=bare_base, timeout=10) as bare_http,
        ):
            for i in range(args.http_tasks):
                for kind in ("bare", "librarian") if i % 2 == 0 else ("librarian", "bare"):
                    started = time.perf_counter()
                    if kind == "librarian":
                        task_id, client, path = submit_lib(), lib_http, "/api/v1/tasks/{}"
                    else:
                        task_id, client, path = submit_bare(), bare_http, "/tasks/{}"
                    deadline = started + 10
                    while time.perf_counter() < deadline:
                        answer = client.get(path.format(task_id))
                        if answer.status_code == 200 and answer.json()["status"] == "SUCCESS":
                            break
                        time.sleep(0.002)
                    else:
                        raise RuntimeError(f"{kind}: {task_id} not SUCCESS over HTTP within 10 s")
                    http_view[kind].append(time.perf_counter() - started)

        # -- 2. submit latency at a fixed offered rate -------------------------------------------------
        targets = {
            "librarian": (lib_base, "/api/v1/tasks/test?message=x&steps=1", lib_url, lib_api, lib_worker),
            "bare": (bare_base, "/submit?message=x&steps=1", bare_url, bare_api, bare_worker),
        }
        load: dict[str, list] = {"librarian": [], "bare": []}
        cpu: dict[str, list] = {"librarian": [], "bare": []}
        for r in range(args.rounds):
            for kind in ("librarian", "bare") if r % 2 == 0 else ("bare", "librarian"):
                base, path, url, api_proc, worker_proc = targets[kind]
                port = int(base.rsplit(":", 1)[1])
                run_open_loop("127.0.0.1", port, path, rate=args.rate, duration=2.0, record=False)  # warm-up
                window = CpuWindow(
                    {"api": api_proc.pid, "worker": worker_proc.pid, "valkey": stack.server._process.pid}
                )
                result = run_open_loop("127.0.0.1", port, path, rate=args.rate, duration=args.duration)
                used = window.stop()
                load[kind].append(result)
                cpu[kind].append(used)
                # The demo jobs still queued: don't let them run into the next phase.
                if kind == "librarian":
                    purge_queue()
                else:
                    with redis.Redis.from_url(url) as bare_client:
                        bare_client.delete("default")  # the stock transport keeps nothing else
                print(
                    f"  [{kind} r{r}] {len(result.latencies)} answers {result.statuses} errors={result.errors} "
                    f"unsent={result.unsent} (all {result.connections} connections busy) "
                    f"achieved {result.achieved_rate:.1f}/s; API CPU "
                    f"{used['api'] * 1000 / max(1, len(result.latencies)):.2f} ms/request, foreign load "
                    f"{used['foreign'] / result.elapsed:.2f} cores",
                    flush=True,
                )
                time.sleep(1.0)
    finally:
        stack.close()
        sink.close()

    print()
    print(f"1a. submit→SUCCESS of a no-op task, backend view (pub/sub), {args.latency_tasks} tasks each, ms")
    rows = []
    for kind in ("bare", "librarian"):
        s = ms(backend[kind])
        rows.append(
            [kind, f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['p99']:.2f}", f"{s['max']:.2f}", f"{s['mean']:.2f}"]
        )
    print(table(["stack", "p50", "p90", "p99", "max", "mean"], rows))
    print(f"\n1b. submit→SUCCESS seen by polling GET every 2 ms over HTTP, {args.http_tasks} tasks each, ms")
    rows = []
    for kind in ("bare", "librarian"):
        s = ms(http_view[kind])
        rows.append(
            [kind, f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['p99']:.2f}", f"{s['max']:.2f}", f"{s['mean']:.2f}"]
        )
    print(table(["stack", "p50", "p90", "p99", "max", "mean"], rows))
    print(
        f"\n2. API submit latency, open loop at {args.rate:.0f} req/s offered for {args.duration:.0f} s "
        f"(due time → last byte), ms; Librarian API processes: {args.api_workers}"
    )
    rows = []
    merged = {}
    for kind in ("bare", "librarian"):
        lat = [x for res in load[kind] for x in res.latencies]
        svc = [x for res in load[kind] for x in res.service]
        merged[kind] = ms(lat)
        s, v = merged[kind], ms(svc)
        api_ms = sum(c["api"] for c in cpu[kind]) * 1000 / max(1, len(lat))
        rows.append(
            [
                kind,
                len(lat),
                f"{s['p50']:.2f}",
                f"{s['p90']:.2f}",
                f"{s['p99']:.2f}",
                f"{s['max']:.2f}",
                f"{v['p99']:.2f}",
                f"{api_ms:.2f}",
            ]
        )
    print(table(["API", "answers", "p50", "p90", "p99", "max", "p99 send→answer", "API CPU ms/req"], rows))

    lib_backend_p50 = ms(backend["librarian"])["p50"]
    lib_submit_p99 = merged["librarian"]["p99"]
    ok_submit = lib_submit_p99 <= SUBMIT_P99_TARGET_MS
    ok_result = lib_backend_p50 <= RESULT_P50_TARGET_MS
    print(
        f"\nSUMMARY e2e: submit p99 {lib_submit_p99:.1f} ms (bare {merged['bare']['p99']:.1f}) at "
        f"{args.rate:.0f} req/s, target <= {SUBMIT_P99_TARGET_MS:.0f}: {'PASS' if ok_submit else 'MISS'}; "
        f"no-op submit→SUCCESS p50 {lib_backend_p50:.1f} ms (bare {ms(backend['bare'])['p50']:.1f}), "
        f"target <= {RESULT_P50_TARGET_MS:.0f}: {'PASS' if ok_result else 'MISS'}"
    )
    write_json(
        args.json,
        "e2e",
        [
            Figure(
                f"submit p99 at {args.rate:.0f} req/s",
                lib_submit_p99,
                "ms",
                baseline=merged["bare"]["p99"],
                target=("<=", SUBMIT_P99_TARGET_MS),
            ),
            Figure(
                "no-op submit→SUCCESS p50",
                lib_backend_p50,
                "ms",
                baseline=ms(backend["bare"])["p50"],
                target=("<=", RESULT_P50_TARGET_MS),
            ),
        ],
        args,
    )
    return 0


SUBMIT_PATH = "/api/v1/tasks/test?message=x&steps=1"


def purge_queue(queue: str = "default") -> None:
    """Drop Librarian's demo jobs still queued, so they don't run into the next phase: through its
    transport, which forgets their publish-journal entries too (a bare DEL of the list leaves them,
    and the worker's recovery republishes them a few seconds later)."""
    from app.worker.celery_app import celery_app  # after Stack.export: settings read the stack's env

    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def _ok(result: LoadResult) -> int:
    return sum(n for status, n in result.statuses.items() if 200 <= status < 300)


def saturate(args: argparse.Namespace) -> int:
    """Per N: closed-loop saturation of submit, open-loop p50/p99 at a fraction of it, no-op
    submit→SUCCESS throughput (see the module docstring)."""
    workers_list = [int(n) for n in args.api_workers_list.split(",") if n.strip()]
    sink = SentrySink(parse=False)
    stack = Stack("e2e-sat", keep=args.keep)
    rows: dict[int, dict] = {}
    try:
        sentry = {"SENTRY_DSN": sink.dsn, "SENTRY_TRACES_SAMPLE_RATE": args.traces_sample_rate}
        stack.export(**sentry)
        stack.start_valkey()
        lib_env = stack.env(**sentry)
        print(f"machine: {machine()}")
        print("starting Librarian worker (db 0) ...", flush=True)
        worker = stack.start_librarian_worker("lib-worker", lib_env)

        from app.api.submit import submit
        from app.core.redis import get_redis
        from app.worker.celery_app import celery_app

        redis_lib = get_redis()
        check = stack.redis()
        valkey_pid = stack.server._process.pid

        for _ in range(20):  # warm-up of this process's publisher and the worker's pool
            ids = [submit(celery_app, redis_lib, NOOP)]
            wait_ids_done(check, ids, timeout=10, poll=0.01)

        for n in workers_list:
            print(f"N={n}: starting `librarian api --workers {n}` ...", flush=True)
            api, base = stack.start_api(f"lib-api-{n}", lib_env, workers=n)
            port = int(base.rsplit(":", 1)[1])
            roots = {"api": api.pid, "worker": worker.pid, "valkey": valkey_pid}
            row: dict = {}

            # a. closed-loop saturation
            run_closed_loop("127.0.0.1", port, SUBMIT_PATH, concurrency=args.concurrency, duration=2.0, record=False)
            purge_queue()
            window = CpuWindow(roots)
            sat = run_closed_loop("127.0.0.1", port, SUBMIT_PATH, concurrency=args.concurrency, duration=args.duration)
            used = window.stop()
            purge_queue()
            ok = _ok(sat)
            row["sat"], row["sat_used"] = sat, used
            row["sat_rate"] = ok / sat.elapsed
            row["sat_errors"] = sat.errors + len(sat.latencies) - ok
            print(
                f"  [N={n} closed loop C={args.concurrency}] {len(sat.latencies)} answers {sat.statuses} "
                f"errors={sat.errors} -> {row['sat_rate']:.1f} 2xx/s; API CPU "
                f"{used['api'] * 1000 / max(1, ok):.2f} ms/request; machine "
                f"{used['machine'] / used['capacity']:.0%} busy, this process {used['bench'] / sat.elapsed:.2f} cores, "
                f"foreign {used['foreign'] / sat.elapsed:.2f} cores",
                flush=True,
            )
            time.sleep(1.0)

            # b. open loop at a fraction of the saturation rate
            rate = args.sat_fraction * row["sat_rate"]
            run_open_loop("127.0.0.1", port, SUBMIT_PATH, rate=rate, duration=2.0, record=False)  # warm-up
            window = CpuWindow(roots)
            op = run_open_loop("127.0.0.1", port, SUBMIT_PATH, rate=rate, duration=args.duration)
            used = window.stop()
            purge_queue()
            row["open"], row["open_used"], row["rate"] = op, used, rate
            print(
                f"  [N={n} open loop {rate:.0f}/s] {len(op.latencies)} answers {op.statuses} errors={op.errors} "
                f"unsent={op.unsent} ({op.connections} connections) achieved {op.achieved_rate:.1f}/s; API CPU "
                f"{used['api'] * 1000 / max(1, len(op.latencies)):.2f} ms/request; machine "
                f"{used['machine'] / used['capacity']:.0%} busy, foreign {used['foreign'] / op.elapsed:.2f} cores",
                flush=True,
            )
            time.sleep(1.5)  # demo jobs the worker had already reserved finish (0.2 s each)

            # c. no-op submit→SUCCESS burst
            stack.stop(api)
            window = CpuWindow({"worker": worker.pid, "valkey": valkey_pid})
            started = time.perf_counter()
            with ThreadPoolExecutor(args.submit_threads) as pool:
                ids = list(pool.map(lambda _: submit(celery_app, redis_lib, NOOP), range(args.result_tasks)))
            submitted = time.perf_counter()
            # tasks finish about in order: watch the last one cheaply (one GET per 5 ms, no load to
            # speak of), then check them all (a few pipelined GETs when they are done)
            deadline = time.monotonic() + 60 + args.result_tasks / 20
            last = f"celery-task-meta-{ids[-1]}"
            while b'"status": "SUCCESS"' not in (check.get(last) or b"") and time.monotonic() < deadline:
                time.sleep(0.005)
            if not wait_ids_done(check, ids, timeout=max(1.0, deadline - time.monotonic()), poll=0.05):
                raise RuntimeError(f"N={n}: the no-op burst did not finish")
            finished = time.perf_counter()
            used = window.stop()
            row["submit_rate"] = args.result_tasks / (submitted - started)
            row["result_rate"] = args.result_tasks / (finished - started)
            row["result_used"] = used
            print(
                f"  [N={n} no-op burst] {args.result_tasks} tasks submitted in {submitted - started:.2f} s "
                f"({row['submit_rate']:.0f}/s), all SUCCESS after {finished - started:.2f} s "
                f"-> {row['result_rate']:.1f} tasks/s; worker CPU "
                f"{used['worker'] * 1000 / args.result_tasks:.2f} ms/task; machine "
                f"{used['machine'] / used['capacity']:.0%} busy, "
                f"foreign {used['foreign'] / (finished - started):.2f} cores",
                flush=True,
            )
            rows[n] = row
            time.sleep(1.0)
        check.close()
    finally:
        stack.close()
        sink.close()

    pct = f"{args.sat_fraction:.0%}"
    print(
        f"\nSaturation, POST {SUBMIT_PATH}: closed loop of {args.concurrency} clients for {args.duration:.0f} s, "
        f"then open loop at {pct} of it for {args.duration:.0f} s (due time → last byte); "
        f"no-op submit→SUCCESS burst of {args.result_tasks} tasks; ms unless stated"
    )
    out = []
    for n, row in rows.items():
        sat, op = row["sat"], row["open"]
        c = ms(sat.latencies)
        o = ms(op.latencies)
        out.append(
            [
                n,
                f"{row['sat_rate']:.0f}",
                row["sat_errors"],
                f"{c['p50']:.1f}/{c['p99']:.1f}",
                f"{row['sat_used']['api'] * 1000 / max(1, _ok(sat)):.2f}",
                f"{row['sat_used']['machine'] / row['sat_used']['capacity']:.0%}",
                f"{row['rate']:.0f}",
                f"{op.achieved_rate:.0f}",
                op.errors + op.unsent + len(op.latencies) - _ok(op),
                f"{o['p50']:.2f}",
                f"{o['p99']:.2f}",
                f"{o['max']:.1f}",
                "PASS" if o["p99"] <= SUBMIT_P99_TARGET_MS else "MISS",
                f"{row['result_rate']:.0f}",
                "/".join(  # CPU seconds of other processes / CPU seconds the machine had, x cores
                    f"{row[k]['foreign'] / row[k]['capacity'] * (os.cpu_count() or 1):.1f}"
                    for k in ("sat_used", "open_used", "result_used")
                ),
            ]
        )
    print(
        table(
            [
                "N",
                "sat req/s",
                "errors",
                "closed p50/p99",
                "API CPU ms/req",
                "machine",
                f"{pct} rate",
                "achieved",
                "errors",
                "p50",
                "p99",
                "max",
                f"p99<={SUBMIT_P99_TARGET_MS:.0f}",
                "no-op →SUCCESS/s",
                "foreign cores a/b/c",
            ],
            out,
        )
    )
    parts = []
    figures = []
    for n, row in rows.items():
        p99 = ms(row["open"].latencies)["p99"]
        parts.append(
            f"N={n}: submit saturates at {row['sat_rate']:.0f} req/s (C={args.concurrency}), p99 {p99:.1f} ms at "
            f"{row['rate']:.0f} req/s ({pct}) target <= {SUBMIT_P99_TARGET_MS:.0f}: "
            f"{'PASS' if p99 <= SUBMIT_P99_TARGET_MS else 'MISS'}; "
            f"no-op submit→SUCCESS {row['result_rate']:.0f} tasks/s"
        )
        figures += [
            Figure(f"submit saturation, api --workers {n}", row["sat_rate"], "req/s"),
            Figure(
                f"submit p99 at {pct} of saturation, api --workers {n}",
                p99,
                "ms",
                target=("<=", SUBMIT_P99_TARGET_MS),
            ),
            Figure(f"no-op submit→SUCCESS throughput (N={n} run)", row["result_rate"], "tasks/s"),
        ]
    print("\nSUMMARY e2e-saturation: " + " | ".join(parts))
    write_json(args.json, "e2e-saturation", figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
