"""/metrics scrape time of the worker and the API with many task series, vs an empty registry.

    python -m bench.scrape [--names 10,50,200] [--scrapes 40] [--depths 0,10000,1000000]
                           [--keyspace 0,100000,1000000] [--json PATH]

Population (why not a worker running many registered tasks: 50 names x 4 queues x every outcome
would take tens of thousands of real task runs and task modules made for the purpose; the files a
scrape reads would be the same): a real `librarian worker` is started (its multiprocess dir is
wiped at start, as always), then three helper processes (bench/support/populate.py) write
Librarian's own metric objects into that directory, one as the worker's main process would
(received, revoked, sent, rejected) and two as its pool children would (started, succeeded, failed x 2 exception
classes, retried, runtime x 4 outcomes, queue wait): NAMES task names on each of the 4 queues.
The worker's own three processes add their files too. The worker's /metrics merges all of them
per scrape (prometheus_client's MultiProcessCollector, as the multiprocess docs prescribe) and
adds the broker gauges (pipelined LLEN, computed at scrape time).
The API (bench/support/api_populated.py: `librarian api` with librarian_tasks_sent_total filled
for NAMES x 4 queues, the only task family the API increments) serves its multiprocess directory as
`librarian api` does: HTTP metrics, task counters, broker gauges (LLEN pipeline + live workers: SCAN + MGET).
Baseline: prometheus_client's exporter over an empty registry (bench/support/empty_exporter.py, the
same wsgiref server as the worker's).
Each number: --scrapes sequential GETs, each on a new connection with Accept-Encoding: gzip (as
Prometheus asks; the API compresses, the worker does not), on a bare socket (httpx would add ~5 ms
of its own parsing for a 2.5 MB answer), wall time to the last byte, after 3 warm-up scrapes.
Growth: with the number of task names (fresh worker and API per count), with queue depth (RPUSH
into `default`, which this worker does not consume: WORKER_QUEUES=pipeline) and with the number
of other keys in the Redis database (results, issued ids: what SCAN walks). Target: <= 20 ms.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import ROOT, Stack, fill_keys, fill_list, free_port, machine, summary, table, wait_http

TARGET_MS = 20.0


def fetch(url: str) -> tuple[float, int, bytes]:
    """GET url as Prometheus does (new connection, Accept-Encoding: gzip), on a bare socket so the
    client's own parsing stays out of the number: (seconds to the last byte, status, decoded body)."""
    import gzip
    import socket as sock
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept-Encoding: gzip\r\n"
        f"User-Agent: librarian-bench\r\nConnection: close\r\n\r\n"
    ).encode()
    chunks = []
    started = time.perf_counter()
    with sock.create_connection((parts.hostname, parts.port)) as conn:
        conn.sendall(request)
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    elapsed = time.perf_counter() - started
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        decoded, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2 :]
        body = decoded
    if b"content-encoding: gzip" in headers:
        body = gzip.decompress(body)
    return elapsed, status, body


def scrape_times(url: str, n: int) -> tuple[list[float], int, int]:
    for _ in range(3):
        fetch(url)
    times = []
    body = b""
    for _ in range(n):
        elapsed, status, body = fetch(url)
        if status != 200:
            raise RuntimeError(f"{url}: HTTP {status}")
        times.append(elapsed)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return times, len(body), samples


def families(text: bytes) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f.name: (f.type, f.documentation, sorted((x.name, tuple(sorted(x.labels.items())), x.value) for x in f.samples))
        for f in text_string_to_metric_families(text.decode())
    }


def check_exposition(metrics_dir: Path, served: bytes) -> str:
    """The worker's multiprocess families must be exactly what prometheus_client itself would serve."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    reference = families(generate_latest(registry))
    got = {name: fam for name, fam in families(served).items() if name in reference}
    if got != reference:
        wrong = sorted(n for n in reference if got.get(n) != reference[n])
        raise AssertionError(f"worker /metrics differs from prometheus_client's exposition in {wrong}")
    return f"{len(reference)} families, {sum(len(f[2]) for f in reference.values())} samples identical"


def ms_row(label: str, times: list[float], base_p50: float | None = None, extra: list | None = None) -> list:
    s = summary(times)
    row = [label, f"{s['p50'] * 1000:.2f}", f"{s['p99'] * 1000:.2f}", f"{s['mean'] * 1000:.2f}"]
    if base_p50 is not None:
        row.append(f"{s['p50'] / base_p50:.1f}x")
    return row + (extra or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", default="10,50,200", help="task-name counts (default 10,50,200)")
    parser.add_argument("--main-names", type=int, default=50, help="count for the headline and sweeps (default 50)")
    parser.add_argument("--scrapes", type=int, default=40, help="scrapes per measurement (default 40)")
    parser.add_argument("--depths", default="0,10000,1000000", help="queue depths for the sweep")
    parser.add_argument("--keyspace", default="0,100000,1000000", help="other keys in the Redis db for the sweep")
    parser.add_argument("--keep", action="store_true")
    add_json_option(parser)
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.names.split(",") if x]
    if args.main_names not in counts:
        counts.append(args.main_names)
    depths = [int(x) for x in args.depths.split(",") if x]
    keyspace = sorted(int(x) for x in args.keyspace.split(",") if x)

    import httpx

    stack = Stack("scrape", keep=args.keep)
    out: dict = {"names": {}, "depth": {}, "keys": {}}
    try:
        stack.export()
        stack.start_valkey()
        client = stack.redis()
        env = stack.env(WORKER_QUEUES="pipeline")
        print(f"machine: {machine()}")
        http = httpx.Client(timeout=30)

        port = free_port()
        empty = stack.spawn("empty-exporter", [sys.executable, "-m", "bench.support.empty_exporter", str(port)], env)
        empty.wait_for("empty exporter ready", timeout=30)
        out["empty"] = scrape_times(f"http://127.0.0.1:{port}/metrics", args.scrapes)
        stack.stop(empty)

        for count in sorted(counts):
            client.flushdb()
            name = f"s{count}"
            worker = stack.start_librarian_worker(name, env)
            fresh = scrape_times(worker.metrics_url, args.scrapes)  # type: ignore[attr-defined]
            metrics_dir = Path(env["VAR_DIR"]).resolve() / "metrics" / f"{name}@{socket.gethostname()}"
            for role in ("main", "child", "child"):
                subprocess.run(
                    [sys.executable, "-m", "bench.support.populate", role, str(count)],
                    check=True,
                    cwd=ROOT,
                    env={**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                )
            api_port = free_port()
            api = stack.spawn(
                f"api-{count}",
                [sys.executable, "-m", "bench.support.api_populated", "--port", str(api_port), "--names", str(count)],
                env,
            )
            base = f"http://127.0.0.1:{api_port}"
            wait_http(f"{base}/health-check/redis", timeout=90, process=api)
            for path in (
                "/health",
                "/health-check/redis",
                "/health-check/celery",
                "/api/v1/tasks/not-a-uuid",
                "/api/v1/tasks/00000000-0000-0000-0000-000000000000",
            ):
                for _ in range(5):
                    http.get(base + path)  # HTTP metrics for a few handlers and statuses
            w = scrape_times(worker.metrics_url, args.scrapes)  # type: ignore[attr-defined]
            a = scrape_times(f"{base}/metrics", args.scrapes)
            checked = check_exposition(metrics_dir, fetch(worker.metrics_url)[2])  # type: ignore[attr-defined]
            out["names"][count] = {"worker": w, "api": a, "fresh": fresh}
            print(
                f"  names={count}: worker p50 {summary(w[0])['p50'] * 1000:.1f} ms ({w[2]} samples), "
                f"API p50 {summary(a[0])['p50'] * 1000:.1f} ms ({a[2]} samples); exposition check: {checked}",
                flush=True,
            )

            if count == args.main_names:
                # Worst case: every series changes between two scrapes (a pool child writing all of
                # them continuously), so no series' text can be reused from the scrape before.
                churn = subprocess.Popen(
                    [sys.executable, "-m", "bench.support.populate", "child", str(count), "3600"],
                    cwd=ROOT,
                    env={**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                )
                try:
                    time.sleep(1.0)
                    out["churn"] = scrape_times(worker.metrics_url, args.scrapes)  # type: ignore[attr-defined]
                finally:
                    churn.terminate()
                    churn.wait(timeout=10)
                print(
                    f"  names={count}, every value changing: worker p50 "
                    f"{summary(out['churn'][0])['p50'] * 1000:.1f} ms",
                    flush=True,
                )
                for depth in depths:
                    fill_list(client, "default", depth)
                    out["depth"][depth] = {
                        "worker": scrape_times(worker.metrics_url, args.scrapes),  # type: ignore[attr-defined]
                        "api": scrape_times(f"{base}/metrics", args.scrapes),
                    }
                client.delete("default")
                have = 0
                for keys in keyspace:
                    fill_keys(client, keys, have)
                    have = max(have, keys)
                    out["keys"][keys] = {
                        "worker": scrape_times(worker.metrics_url, args.scrapes),  # type: ignore[attr-defined]
                        "api": scrape_times(f"{base}/metrics", args.scrapes),
                        "dbsize": client.dbsize(),
                    }
                    print(
                        f"  keyspace {client.dbsize()} keys: API p50 "
                        f"{summary(out['keys'][keys]['api'][0])['p50'] * 1000:.1f} ms",
                        flush=True,
                    )
                client.flushdb()
            stack.stop(api)
            stack.stop(worker)
        http.close()
    finally:
        stack.close()

    base_p50 = summary(out["empty"][0])["p50"]
    main = out["names"][args.main_names]
    print(
        f"\n1. Scrape time with {args.main_names} task names x 4 queues x every state, ms "
        f"({args.scrapes} scrapes each; ratio = p50 / empty-registry p50)"
    )
    print(
        table(
            ["target", "p50", "p99", "mean", "vs empty", "bytes", "samples"],
            [
                ms_row(
                    "empty registry (prometheus_client exporter)",
                    out["empty"][0],
                    base_p50,
                    [out["empty"][1], out["empty"][2]],
                ),
                ms_row(
                    "worker, just started (4 task names)",
                    main["fresh"][0],
                    base_p50,
                    [main["fresh"][1], main["fresh"][2]],
                ),
                ms_row(
                    f"worker, {args.main_names} names",
                    main["worker"][0],
                    base_p50,
                    [main["worker"][1], main["worker"][2]],
                ),
                *(
                    [
                        ms_row(
                            f"worker, {args.main_names} names, every value changing between scrapes",
                            out["churn"][0],
                            base_p50,
                            [out["churn"][1], out["churn"][2]],
                        )
                    ]
                    if "churn" in out
                    else []
                ),
                ms_row(f"API, {args.main_names} names", main["api"][0], base_p50, [main["api"][1], main["api"][2]]),
            ],
        )
    )
    print("\n2. Growth with the number of task names (x 4 queues), ms")
    rows = []
    for count in sorted(out["names"]):
        r = out["names"][count]
        rows.append(
            [count, *ms_row("", r["worker"][0])[1:3], r["worker"][2], *ms_row("", r["api"][0])[1:3], r["api"][2]]
        )
    print(table(["names", "worker p50", "worker p99", "worker samples", "API p50", "API p99", "API samples"], rows))
    print(f"\n3. Growth with queue depth (`default`), {args.main_names} names, ms")
    rows = [[d, *ms_row("", r["worker"][0])[1:3], *ms_row("", r["api"][0])[1:3]] for d, r in out["depth"].items()]
    print(table(["depth", "worker p50", "worker p99", "API p50", "API p99"], rows))
    print("\n4. Growth with other keys in the Redis db (what the API's live-workers SCAN walks), ms")
    rows = [
        [k, r["dbsize"], *ms_row("", r["worker"][0])[1:3], *ms_row("", r["api"][0])[1:3]]
        for k, r in out["keys"].items()
    ]
    print(table(["extra keys", "dbsize", "worker p50", "worker p99", "API p50", "API p99"], rows))

    w, a = summary(main["worker"][0]), summary(main["api"][0])
    ok = max(w["p99"], a["p99"]) * 1000 <= TARGET_MS
    d = out["depth"]
    depth_note = ""
    if d:
        lo, hi = min(d), max(d)
        depth_note = (
            f"; queue depth {lo}->{hi}: worker p50 {summary(d[lo]['worker'][0])['p50'] * 1000:.1f}->"
            f"{summary(d[hi]['worker'][0])['p50'] * 1000:.1f} ms"
        )
    n_lo, n_hi = min(out["names"]), max(out["names"])
    print(
        f"SUMMARY scrape: {args.main_names} names x 4 queues: worker p50 {w['p50'] * 1000:.1f} p99 "
        f"{w['p99'] * 1000:.1f} ms, API p50 {a['p50'] * 1000:.1f} p99 {a['p99'] * 1000:.1f} ms "
        f"(empty registry p50 {base_p50 * 1000:.1f} ms)"
        + (
            f"; every value changing: worker p50 {summary(out['churn'][0])['p50'] * 1000:.1f} p99 "
            f"{summary(out['churn'][0])['p99'] * 1000:.1f} ms"
            if "churn" in out
            else ""
        )
        + f"; target <= {TARGET_MS:.0f} ms: {'PASS' if ok else 'MISS'}; "
        f"names {n_lo}->{n_hi}: worker p50 {summary(out['names'][n_lo]['worker'][0])['p50'] * 1000:.1f}->"
        f"{summary(out['names'][n_hi]['worker'][0])['p50'] * 1000:.1f} ms{depth_note}"
    )
    empty_p99 = summary(out["empty"][0])["p99"] * 1000
    figures = [
        Figure(
            f"worker /metrics p99, {args.main_names} names",
            w["p99"] * 1000,
            "ms",
            baseline=empty_p99,
            target=("<=", TARGET_MS),
        ),
        Figure(
            f"API /metrics p99, {args.main_names} names",
            a["p99"] * 1000,
            "ms",
            baseline=empty_p99,
            target=("<=", TARGET_MS),
        ),
    ]
    if "churn" in out:
        figures.append(
            Figure(
                f"worker /metrics p50, {args.main_names} names, every value changing",
                summary(out["churn"][0])["p50"] * 1000,
                "ms",
            )
        )
    write_json(args.json, "scrape", figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
