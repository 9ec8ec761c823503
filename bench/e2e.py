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
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import CpuWindow, Stack, machine, summary, table
from bench.support.load import run_open_loop
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
    add_json_option(parser)
    args = parser.parse_args(argv)

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
                import redis

                purge = redis.Redis.from_url(url)
                purge.delete("default")  # the demo jobs still queued: don't let them run into the next phase
                purge.close()
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


if __name__ == "__main__":
    sys.exit(main())
