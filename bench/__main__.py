"""Every benchmark, one after the other: one summary table on stdout and bench/results/<date>.json.

    python -m bench [--full] [--only NAME,...] [--skip NAME,...] [--results DIR]

Each benchmark runs as `python -m bench.<module> ... --json FILE` in a process of its own, from the
repository root; its own report goes to stderr, so stdout carries only the summary. Quick settings
by default (fewer tasks, requests and repeats, smaller sweeps: ~5 min on 2 cores); `--full` uses
the settings of docs/performance.md. The results file (one per day; a later run the same day
replaces the benchmarks it ran) holds, per benchmark, every figure with its baseline, target and
verdict, the command, the settings and the commit; the summary's `previous` column is the same
figure in the newest earlier file.
Exit status 1 when a benchmark failed to run (a MISS is a result, not a failure).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.support.harness import ROOT, machine, table

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    quick: tuple[str, ...]  # `python -m bench`
    full: tuple[str, ...]  # `python -m bench --full`: the settings of docs/performance.md


CORPUS = ("--corpus", "tests/fixtures/real")
BENCHMARKS = [
    Bench("hooks", "bench.hooks", ("--tasks", "10000", "--repeat", "3"), ()),
    Bench("validation", "bench.validation", ("--repeat", "3"), ("--repeat", "3")),
    Bench("validation-corpus", "bench.validation", (*CORPUS, "--repeat", "1"), (*CORPUS, "--repeat", "3")),
    Bench("hostile", "bench.hostile", (), ()),
    Bench(
        "health",
        "bench.health",
        ("--requests", "300", "--ping-requests", "3", "--keyspace", "0,100000", "--sweep-requests", "50"),
        (),
    ),
    Bench(
        "scrape",
        "bench.scrape",
        ("--names", "10,50", "--depths", "0,10000", "--keyspace", "0,100000"),
        (),
    ),
    Bench("e2e", "bench.e2e", ("--duration", "10", "--latency-tasks", "150", "--http-tasks", "50"), ()),
    Bench("overhead", "bench.overhead", ("--tasks", "1500", "--rounds", "2"), ("--rounds", "4")),
    Bench("scale", "bench.scale", ("--parts", "45"), ("--parts", "90")),
    Bench("engine", "bench.engine", ("--rounds", "1"), ("--rounds", "2")),
    Bench("broker", "bench.broker", ("--messages", "1000", "--rounds", "3"), ("--messages", "3000", "--rounds", "5")),
    Bench("publish-wait", "bench.publish_wait", ("--submits", "500", "--rounds", "3"), ()),
]


def run_one(bench: Bench, full: bool, scratch: Path) -> dict[str, Any]:
    out = scratch / f"{bench.name}.json"
    argv = [sys.executable, "-m", bench.module, *(bench.full if full else bench.quick), "--json", str(out)]
    command = shlex.join(["python", *argv[1:-2]])
    print(f"\n=== {bench.name}: {command}", file=sys.stderr, flush=True)
    started = time.monotonic()
    code = subprocess.run(argv, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr).returncode
    result: dict[str, Any] = {"command": command, "exit_code": code, "seconds": round(time.monotonic() - started, 1)}
    if out.exists():
        result.update({k: v for k, v in json.loads(out.read_text()).items() if k in ("args", "figures")})
    result.setdefault("figures", [])
    return result


def previous_results(directory: Path, today: str) -> tuple[Path | None, dict[tuple[str, str], Any]]:
    """The newest results file before today's, as {(benchmark, figure name): value}."""
    earlier = sorted(p for p in directory.glob("*.json") if p.stem < today)
    if not earlier:
        return None, {}
    data = json.loads(earlier[-1].read_text())
    values = {(name, f["name"]): f["value"] for name, b in data.get("benchmarks", {}).items() for f in b["figures"]}
    return earlier[-1], values


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ratio":
        return f"{value:.3f}"
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty else "") if head.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> int:
    names = [b.name for b in BENCHMARKS]
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="the settings of docs/performance.md instead of quick ones")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(names)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory of the results files")
    args = parser.parse_args(argv)
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    if unknown := (only | skip) - set(names):
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    chosen = [b for b in BENCHMARKS if (not only or b.name in only) and b.name not in skip]

    today = datetime.now().date().isoformat()
    settings, revision = ("full" if args.full else "quick"), commit()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="librarian-bench-all-") as scratch:
        for bench in chosen:
            started = datetime.now().astimezone().isoformat(timespec="seconds")
            result = run_one(bench, args.full, Path(scratch))
            results[bench.name] = {"started": started, "settings": settings, "commit": revision, **result}

    prev_path, previous = previous_results(args.results, today)
    minutes = sum(r["seconds"] for r in results.values()) / 60
    print(f"\nmachine: {machine()}; commit {revision}; {settings} settings; {minutes:.1f} min")
    print(f"previous: {shown(prev_path) if prev_path else '-'}")
    print(
        table(
            ["benchmark", "figure", "value", "baseline", "unit", "target", "verdict", "previous"],
            summary_rows(results, previous),
        )
    )

    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{today}.json"
    kept = json.loads(path.read_text()).get("benchmarks", {}) if path.exists() else {}
    document = {"date": today, "machine": machine(), "benchmarks": {**kept, **results}}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"written: {shown(path)}")
    return 0 if all(r["exit_code"] == 0 and r["figures"] for r in results.values()) else 1


def summary_rows(results: dict[str, dict[str, Any]], previous: dict[tuple[str, str], Any]) -> list[list[str]]:
    rows = []
    for name, result in results.items():
        if result["exit_code"] != 0 or not result["figures"]:
            rows.append([name, f"FAILED (exit {result['exit_code']})", "", "", "", "", "", ""])
        rows += [
            [
                name,
                f["name"],
                fmt(f["value"], f["unit"]),
                fmt(f["baseline"], f["unit"]),
                f["unit"],
                f["target"] or "",
                f["verdict"] or "",
                fmt(previous.get((name, f["name"])), f["unit"]),
            ]
            for f in result["figures"]
        ]
    return rows


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


if __name__ == "__main__":
    sys.exit(main())
