"""Stack vs engine: the real-model corpus through the API and workers against the offline engine.

    python -m bench.engine [--rounds 2] [--files N] [--upload-threads 4] [--json PATH]

A (baseline): `librarian validate --jobs 2 --format json FILES...`, the workers' engine without a
server (app/cli/validate.py: the declared-size guard and the sandboxed child per file, two files in
parallel). Rate = files / wall seconds of the command (interpreter start included).
B: the same files uploaded (`POST /api/v1/parts`, multipart, from --upload-threads threads) to
one `librarian api` and one `librarian worker` of 2 pool processes, on the embedded defaults
(Valkey from the harness, SQLite, local storage). Rate = parts / (first upload sent -> last part
final, as the API lists it). The stack stays up across rounds; 2 x --jobs untimed parts warm it
up first (the first task of a pool process imports the engine).
Rounds alternate A,B / B,A; the ratio B/A is taken from the medians (target >= 0.8).

Per-part breakdown of B, every source read after each round:
  upload        the client's time per POST (body sent, stored, row written, task published);
  queue wait    `queue_wait_s` of validate_file's outcome line (publish -> start), per part; the
                mean of librarian_task_queue_wait_seconds over the round alongside, as a check;
  runtime       `task succeeded` runtime_s in the worker's JSON log (task start -> success),
  split by the part's timestamps and the log: the task's start (its `task succeeded` line's time
  less runtime_s) and `part finished` times, the part's final updated_at (set just before the
  commit that stores the report), `part finished` duration_s (materialise + validate_guarded) and
  the report's summary.duration_seconds (the
  engine, timed inside the sandbox child). What one interval holds together is printed as such.
CPU: user+system of the A command and all its descendants (its forkserver, which it leaves
behind, is reaped here as a child subreaper); of the API, the worker (pool and sandbox children
included, reaped ones too) and Valkey over B; and what the rest of the machine used meanwhile
(foreign: other benchmarks on the same cores skew both sides).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import (
    ROOT,
    ManagedProcess,
    Stack,
    cli,
    machine,
    percentile,
    proc_stat,
    self_cpu,
    table,
    tree_cpu,
)
from bench.support.harness import machine_busy as machine_busy_s

CORPUS = ROOT / "tests" / "fixtures" / "real"
FINAL = ("validated", "rejected", "failed")
TASK = "librarian.validation.validate_file"
TARGET = 0.8
TIMEOUT_S = 900


def corpus(limit: int | None) -> list[Path]:
    """Every model, or `limit` of them spread evenly over the sizes (smallest and largest kept)."""
    files = sorted(CORPUS.glob("*.3dm"), key=lambda p: (p.stat().st_size, p.name))
    if limit is None or limit >= len(files):
        return sorted(files)
    if limit == 1:
        return [files[0]]
    picks = sorted({round(i * (len(files) - 1) / (limit - 1)) for i in range(limit)})
    return sorted(files[i] for i in picks)


# -- CPU -----------------------------------------------------------------------------------------
def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- A: the offline engine -----------------------------------------------------------------------
@dataclass
class EngineRun:
    seconds: float
    cpu_s: float
    foreign_cpu_s: float
    passed: dict[str, bool]  # file name -> passed
    engine_s: dict[str, float]  # file name -> summary.duration_seconds (reports with metadata)

    @property
    def rate(self) -> float:
        return len(self.passed) / self.seconds


PR_SET_CHILD_SUBREAPER = 36


def set_subreaper(on: bool) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def reap_orphans(keep: set[int], timeout: float = 10.0) -> None:
    """Wait for this process's children that are not in `keep`: the forkserver `librarian validate`
    leaves behind (CPython waits for it only in its own tests), with the CPU of the pool processes
    it reaped. Only then does RUSAGE_CHILDREN hold the whole of A."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        orphans = [
            pid
            for e in os.listdir("/proc")
            if e.isdigit()
            and (pid := int(e)) not in keep
            and (st := proc_stat(pid)) is not None
            and st[0] == os.getpid()
        ]
        if not orphans:
            return
        for pid in orphans:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)


def run_engine(files: list[Path], env: dict[str, str], jobs: int, keep: set[int]) -> EngineRun:
    argv = cli("validate", "--jobs", str(jobs), "--format", "json", *map(str, files))
    cpu0, self0, busy0 = children_cpu(), self_cpu(), machine_busy_s()[0]
    set_subreaper(True)  # the CLI's forkserver outlives it: reparented here, so it can be reaped
    try:
        began = time.monotonic()
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True)
        seconds = time.monotonic() - began
        reap_orphans(keep)
    finally:
        set_subreaper(False)
    cpu = children_cpu() - cpu0
    foreign = max(0.0, machine_busy_s()[0] - busy0 - cpu - (self_cpu() - self0))
    try:
        entries = json.loads(done.stdout)
    except json.JSONDecodeError:
        entries = None
    # 0 all passed, 1 some rejected; 2 (some unreadable) is a result too when every file has one.
    if done.returncode not in (0, 1, 2) or not isinstance(entries, list) or len(entries) != len(files):
        raise RuntimeError(f"librarian validate exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    passed = {Path(e["file"]).name: e["status"] == "passed" for e in entries}
    engine = {
        Path(e["file"]).name: e["report"]["summary"]["duration_seconds"]
        for e in entries
        if e["report"] is not None and e["report"].get("metadata") is not None
    }
    return EngineRun(seconds, cpu, foreign, passed, engine)


# -- B: the stack --------------------------------------------------------------------------------
@dataclass
class PartTimes:
    name: str
    upload_s: float
    status: str = ""
    runtime_s: float | None = None
    queue_wait_s: float | None = None  # the outcome line's queue_wait_s (due -> start)
    db_before_s: float | None = None  # task start -> engine start, plus the part's re-read after it
    guard_s: float | None = None  # part finished duration_s - engine: materialise, guard, fork, pipe
    engine_s: float | None = None  # report summary.duration_seconds (inside the sandbox child)
    report_write_s: float | None = None  # updated_at -> `part finished`: commit of the report + metrics
    tail_s: float | None = None  # `part finished` -> success: cache DEL, return, signals


@dataclass
class StackRun:
    seconds: float
    cpu_s: float
    cpu_by: dict[str, float]
    foreign_cpu_s: float
    parts: list[PartTimes]
    queue_wait_mean_s: float | None
    queue_wait_n: int
    runtime_hist_mean_s: float | None
    passed: dict[str, bool] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.parts) / self.seconds


def scrape(process: ManagedProcess) -> dict[str, float]:
    """validate_file's runtime and queue-wait histogram sums and counts, from the worker's /metrics."""
    text = httpx.get(process.metrics_url, timeout=30).text  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("librarian_task_runtime_seconds", "librarian_task_queue_wait_seconds"):
            continue
        for sample in family.samples:
            if sample.labels.get("task") == TASK and sample.name.endswith(("_sum", "_count")):
                key = f"{family.name}{sample.name[len(family.name) :]}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def finished(client: httpx.Client) -> int:
    return sum(client.get("/api/v1/parts", params={"status": s, "limit": 1}).json()["total"] for s in FINAL)


def wait_final(client: httpx.Client, target: int, began: float) -> None:
    while finished(client) < target:
        if time.monotonic() - began > TIMEOUT_S:
            raise TimeoutError(f"parts not final after {TIMEOUT_S} s")
        time.sleep(0.2)


def upload(client: httpx.Client, path: Path) -> tuple[str, float]:
    started = time.perf_counter()
    answer = client.post("/api/v1/parts", files={"file": (path.name, path.read_bytes())})
    seconds = time.perf_counter() - started
    answer.raise_for_status()
    return answer.json()["part_id"], seconds


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def log_events(worker: ManagedProcess) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """{task_id: {'started': t, 'runtime_s': s}}, {part_id: `part finished` line} from the worker log."""
    tasks: dict[str, dict[str, Any]] = {}
    parts: dict[str, dict[str, Any]] = {}
    for line in worker.json_lines():
        event = line.get("event")
        if event == "task succeeded" and line.get("task_name") == TASK:
            # The outcome line is written as the run ends, runtime_s measured then: start = end - runtime.
            entry = tasks.setdefault(line["task_id"], {})
            entry["runtime_s"] = line.get("runtime_s")
            entry["queue_wait_s"] = line.get("queue_wait_s")
            if line.get("runtime_s") is not None:
                entry["started"] = ts(line["timestamp"]) - line["runtime_s"]
        elif event == "part finished" and "part_id" in line:
            parts[line["part_id"]] = line
    return tasks, parts


def valkey_pid(stack: Stack) -> int:
    return getattr(getattr(stack.server, "_process", None), "pid", 0)


def run_stack(
    stack: Stack, client: httpx.Client, api: ManagedProcess, worker: ManagedProcess, files: list[Path], threads: int
) -> StackRun:
    valkey = valkey_pid(stack)
    roots = {"api": [api.pid], "worker": [worker.pid], **({"valkey": [valkey]} if valkey else {})}
    before_metrics, before_final = scrape(worker), finished(client)
    cpu0 = {name: tree_cpu(*pids, reaped=True) for name, pids in roots.items()}
    self0, busy0 = self_cpu(), machine_busy_s()[0]
    began = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        uploads = list(pool.map(lambda p: upload(client, p), files))
    wait_final(client, before_final + len(files), began)
    seconds = time.monotonic() - began
    cpu_by = {name: tree_cpu(*pids, reaped=True) - cpu0[name] for name, pids in roots.items()}
    foreign = max(0.0, machine_busy_s()[0] - busy0 - sum(cpu_by.values()) - (self_cpu() - self0))
    after_metrics = scrape(worker)

    def delta(name: str) -> float:
        return after_metrics.get(name, 0.0) - before_metrics.get(name, 0.0)

    wait_n = int(delta("librarian_task_queue_wait_seconds_count"))
    run_n = int(delta("librarian_task_runtime_seconds_count"))

    time.sleep(0.5)  # the last `task succeeded` line follows the final status by a few ms
    tasks, finished_lines = log_events(worker)
    parts, passed = [], {}
    for path, (part_id, upload_s) in zip(files, uploads, strict=True):
        part = client.get(f"/api/v1/parts/{part_id}").json()
        times = PartTimes(path.name, upload_s, part["status"])
        passed[path.name] = part["status"] == "validated"
        task = tasks.get(part["task_id"] or "", {})
        line = finished_lines.get(part_id)
        summary = part.get("summary") or {}
        times.runtime_s = task.get("runtime_s")
        times.queue_wait_s = task.get("queue_wait_s")
        if line is not None and line.get("duration_s") is not None:
            sandboxed = line["duration_s"]
            if line.get("object_count") is not None and summary.get("duration_seconds") is not None:
                # the engine ran (a report with metadata): its own timer, inside the sandbox child
                report = client.get(f"/api/v1/parts/{part_id}/report")
                if report.status_code == 200 and report.json().get("metadata") is not None:
                    times.engine_s = summary["duration_seconds"]
                    times.guard_s = sandboxed - times.engine_s
            updated = ts(part["updated_at"])
            done_at = ts(line["timestamp"])
            if "started" in task:
                times.db_before_s = updated - sandboxed - task["started"]
                times.report_write_s = done_at - updated
                if times.runtime_s is not None:
                    times.tail_s = times.runtime_s - (done_at - task["started"])
        parts.append(times)
    return StackRun(
        seconds=seconds,
        cpu_s=sum(cpu_by.values()),
        cpu_by=cpu_by,
        foreign_cpu_s=foreign,
        parts=parts,
        queue_wait_mean_s=delta("librarian_task_queue_wait_seconds_sum") / wait_n if wait_n else None,
        queue_wait_n=wait_n,
        runtime_hist_mean_s=delta("librarian_task_runtime_seconds_sum") / run_n if run_n else None,
        passed=passed,
    )


# -- report --------------------------------------------------------------------------------------
def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


def component(name: str, values: list[float | None], source: str, runtime_mean: float | None) -> list[str]:
    got = [v for v in values if v is not None]
    if not got:
        return [name, "0", "-", "-", "-", "-", source]
    mean = statistics.fmean(got)
    share = f"{mean / runtime_mean * 100:.0f} %" if runtime_mean else "-"
    return [
        name,
        str(len(got)),
        ms(mean),
        ms(percentile(got, 50)),
        ms(percentile(got, 90)),
        share,
        source,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs, alternating order; medians are reported")
    parser.add_argument("--files", type=int, default=None, help="a subset of N models spread over the sizes")
    parser.add_argument("--jobs", type=int, default=2, help="`librarian validate --jobs` and worker pool processes")
    parser.add_argument("--upload-threads", type=int, default=4, help="client threads uploading to the API")
    add_json_option(parser)
    args = parser.parse_args(argv)
    files = corpus(args.files)
    size_mb = sum(p.stat().st_size for p in files) / 1e6

    engine_runs: list[EngineRun] = []
    stack_runs: list[StackRun] = []
    with Stack("engine") as stack:
        stack.start_valkey()
        env = stack.env(RATE_LIMIT_UPLOADS="100000/minute", WORKER_CONCURRENCY=str(args.jobs))
        worker = stack.start_librarian_worker("engine", env)
        api, base = stack.start_api("api", env)
        with httpx.Client(base_url=base, timeout=120) as client:
            # Untimed warm-up: the first task of each pool process imports the engine (~100 ms).
            warm = sorted(corpus(None), key=lambda p: p.stat().st_size)[: 2 * args.jobs]
            with ThreadPoolExecutor(len(warm)) as pool:
                list(pool.map(lambda p: upload(client, p), warm))
            wait_final(client, len(warm), time.monotonic())
            for n in range(args.rounds):
                order = ("A", "B") if n % 2 == 0 else ("B", "A")
                for side in order:
                    if side == "A":
                        keep = {p.pid for p in stack.processes} | {valkey_pid(stack)}
                        engine_runs.append(run_engine(files, env, args.jobs, keep))
                        r: Any = engine_runs[-1]
                    else:
                        stack_runs.append(run_stack(stack, client, api, worker, files, args.upload_threads))
                        r = stack_runs[-1]
                    print(
                        f"round {n + 1} {side}: {r.rate:.2f}/s ({r.seconds:.1f} s, CPU {r.cpu_s:.1f} s, "
                        f"foreign {r.foreign_cpu_s:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )

    a_rate = statistics.median(r.rate for r in engine_runs)
    b_rate = statistics.median(r.rate for r in stack_runs)
    ratio = b_rate / a_rate
    a_cpu = statistics.median(r.cpu_s / len(files) for r in engine_runs)
    b_cpu = statistics.median(r.cpu_s / len(files) for r in stack_runs)
    verdict = "PASS" if ratio >= TARGET else "MISS"
    mismatched = sorted(
        {p.name for e in engine_runs for s in stack_runs for p in files if e.passed[p.name] != s.passed[p.name]}
    )

    print(
        f"\nstack vs engine on {machine()}: {len(files)} real models ({size_mb:.1f} MB), {args.jobs} jobs / "
        f"pool processes, {args.upload_threads} upload threads, {args.rounds} round(s)"
    )
    rows = []
    for n, (e, s) in enumerate(zip(engine_runs, stack_runs, strict=True), 1):
        rows.append(
            [
                n,
                f"{e.rate:.2f}",
                f"{s.rate:.2f}",
                f"{s.rate / e.rate:.3f}",
                ms(e.cpu_s / len(files)),
                ms(s.cpu_s / len(files)),
                " / ".join(f"{k} {ms(v / len(files))}" for k, v in s.cpu_by.items()),
                f"{e.foreign_cpu_s:.1f} / {s.foreign_cpu_s:.1f}",
            ]
        )
    rows.append(["median", f"{a_rate:.2f}", f"{b_rate:.2f}", f"{ratio:.3f}", ms(a_cpu), ms(b_cpu), "", ""])
    print(
        table(
            [
                "round",
                "A engine files/s",
                "B stack parts/s",
                "B/A",
                "A CPU ms/file",
                "B CPU ms/part",
                "B CPU ms/part by process",
                "foreign CPU s A / B",
            ],
            rows,
        )
    )

    parts = [p for s in stack_runs for p in s.parts]
    runtime_mean = statistics.fmean([p.runtime_s for p in parts if p.runtime_s is not None] or [float("nan")])
    wait_n = sum(s.queue_wait_n for s in stack_runs)
    wait_mean = sum((s.queue_wait_mean_s or 0.0) * s.queue_wait_n for s in stack_runs) / wait_n if wait_n else None
    hist_runtime = [s.runtime_hist_mean_s for s in stack_runs if s.runtime_hist_mean_s is not None]
    a_engine = [v for e in engine_runs for v in e.engine_s.values()]
    print(f"\nper part, B (all rounds: {len(parts)} parts); share = of the mean task runtime")
    breakdown = [
        component("upload (client, per POST)", [p.upload_s for p in parts], "client timer", None),
        component(
            "queue wait (publish -> start)",
            [p.queue_wait_s for p in parts],
            f"log queue_wait_s (histogram mean {ms(wait_mean)} ms over {wait_n})",
            None,
        ),
        component(
            "task runtime (start -> success)",
            [p.runtime_s for p in parts],
            f"log runtime_s (histogram mean {ms(statistics.fmean(hist_runtime)) if hist_runtime else '-'} ms)",
            runtime_mean,
        ),
        component(
            "  DB reads + PROCESSING write",
            [p.db_before_s for p in parts],
            "updated_at - duration_s - task start: + ruleset lookup, re-read after engine",
            runtime_mean,
        ),
        component(
            "  guard + sandbox outside engine",
            [p.guard_s for p in parts],
            "`part finished` duration_s - report duration_seconds (materialise, fork, pipe)",
            runtime_mean,
        ),
        component(
            "  engine (in sandbox child)",
            [p.engine_s for p in parts],
            "report summary.duration_seconds",
            runtime_mean,
        ),
        component(
            "  report write (DB commit) + metrics",
            [p.report_write_s for p in parts],
            "`part finished` - updated_at; NOT split: the report is a column of the part row",
            runtime_mean,
        ),
        component(
            "  after: cache DEL + success signals",
            [p.tail_s for p in parts],
            "runtime_s - (`part finished` - task start)",
            runtime_mean,
        ),
        component("A: engine (in sandbox child)", list(a_engine), "CLI report duration_seconds", None),
    ]
    print(table(["component", "n", "mean ms", "p50 ms", "p90 ms", "share", "source"], breakdown))
    no_engine = sum(p.engine_s is None for p in parts)
    print(
        f"not split: the report is stored in the same commit as the final status (no separate report store), "
        f"so its write and the model metrics that follow are one interval; DB reads and the PROCESSING write are "
        f"one interval; {no_engine} part(s) without an engine "
        f"time (no report metadata: the engine did not finish a model). In a batch, queue wait is mostly "
        f"waiting for a free pool process, not broker latency. A includes the CLI's interpreter start."
    )
    if mismatched:
        print(f"WARNING: verdicts differ between A and B for: {', '.join(mismatched)}")

    engine_mean = statistics.fmean([p.engine_s for p in parts if p.engine_s is not None] or [float("nan")])
    upload_mean = statistics.fmean(p.upload_s for p in parts)
    print(
        f"\nSUMMARY engine: stack {b_rate:.2f} parts/s vs offline engine {a_rate:.2f} files/s "
        f"({len(files)} real models, {args.jobs} jobs, median of {args.rounds}): {ratio:.3f}x; "
        f"target >= {TARGET}: {verdict}; per part: upload {ms(upload_mean)} ms, queue wait {ms(wait_mean)} ms "
        f"(mean), runtime {ms(runtime_mean)} ms of which engine {ms(engine_mean)} ms; "
        f"CPU {ms(b_cpu)} vs {ms(a_cpu)} ms per model"
    )
    figures = [
        Figure("stack parts/s", b_rate, "parts/s", baseline=a_rate),
        Figure("stack / engine throughput", ratio, "ratio", target=(">=", TARGET)),
        Figure("CPU per model, stack", b_cpu * 1000, "ms", baseline=a_cpu * 1000),
        Figure("upload per part (client)", upload_mean * 1000, "ms"),
        Figure("queue wait per part (mean)", (wait_mean or float("nan")) * 1000, "ms"),
        Figure("task runtime per part (mean)", runtime_mean * 1000, "ms"),
    ]
    write_json(args.json, "engine", figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
