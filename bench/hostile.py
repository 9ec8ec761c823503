"""Hostile models through the validation sandbox: file size, peak memory, time and outcome per case.

    python -m bench.hostile [--memory-mb 512] [--timeout-s 20] [--json PATH]

Generates tests/fixtures/hostile_3dm.py's models, then validates each as a worker does
(app.validation.guarded: the declared-size guard, then the engine in a sandboxed child under the
limits) and prints a markdown table for docs/reliability.md. Peak memory is the sandboxed child's
peak resident size (it includes the parent's pages it touched: ~40 MB for a worker or this script).
A model ends within the limits when its time is at most the timeout plus 2 s and its peak at most the
memory limit plus this process's own resident size (the limit caps what the child adds to its parent).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.validation import UnreadableModelError
from app.validation.engine import validate_path
from app.validation.guarded import declared_facts, refusal
from app.validation.reader import inspect_file
from app.validation.sandbox import Limits, run_sandboxed
from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import ROOT

GRACE_S = 2.0


def outcome_of(path: Path, limits: Limits) -> tuple[str, float, float | None]:
    """(outcome, seconds, peak MB or None when no child ran)."""
    started = time.monotonic()
    try:
        facts = inspect_file(path)
    except UnreadableModelError as exc:
        return f"rejected: unreadable ({exc.code})", time.monotonic() - started, None
    if refusal(declared_facts(path, facts), limits, None) is not None:
        return "rejected: MODEL_TOO_LARGE (before reading)", time.monotonic() - started, None
    result = run_sandboxed(validate_path, str(path), limits=limits)
    peak = result.details.get("peak_rss_mb")
    if result.kind == "value":
        report = result.value
        errors = sorted({f["code"] for f in report["findings"] if f["severity"] == "error"})
        verdict = "validated" if report["summary"]["passed"] else f"rejected: {', '.join(errors)}"
        return verdict, result.details["seconds"], peak
    if result.kind == "unreadable":
        return f"rejected: unreadable ({result.unreadable.code})", result.details["seconds"], peak
    code = "RESOURCE_LIMIT" if result.kind == "limit" else "ENGINE_CRASH"
    return (
        f"rejected: {code} ({result.details.get('limit') or result.details.get('signal')})",
        result.details["seconds"],
        peak,
    )


def _own_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--timeout-s", type=float, default=20)
    add_json_option(parser)
    args = parser.parse_args(argv)
    limits = Limits(args.memory_mb, args.timeout_s)
    own_rss_mb = _own_rss_mb()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        # generated in a child, so this process (which the sandboxed children copy) stays small
        subprocess.run(
            [sys.executable, "-m", "tests.fixtures.hostile_3dm", tmp], cwd=ROOT, check=True, capture_output=True
        )
        cases = {path.stem: path for path in sorted(Path(tmp).glob("*.3dm"), key=lambda p: p.stat().st_mtime)}
        print(f"limits: VALIDATION_MAX_MEMORY_MB={limits.memory_mb}, VALIDATION_TIMEOUT_S={limits.timeout_s:g}\n")
        print("| case | file size | peak memory | time | outcome |")
        print("| --- | ---: | ---: | ---: | --- |")
        within, slowest, largest = 0, 0.0, 0.0
        for name, path in cases.items():
            verdict, seconds, peak = outcome_of(path, limits)
            memory = f"{peak:,.0f} MB" if peak is not None else "no child"
            print(f"| {name} | {path.stat().st_size:,} B | {memory} | {seconds:.2f} s | {verdict} |")
            within += seconds <= limits.timeout_s + GRACE_S and (peak or 0.0) <= limits.memory_mb + own_rss_mb
            slowest, largest = max(slowest, seconds), max(largest, peak or 0.0)
    print(
        f"\nSUMMARY hostile: {within} of {len(cases)} models ended within the limits; slowest {slowest:.2f} s, "
        f"largest peak {largest:,.0f} MB"
    )
    write_json(
        args.json,
        "hostile",
        [
            Figure("models ending within the limits", within, f"of {len(cases)}", target=(">=", len(cases))),
            Figure("slowest model", slowest, "s"),
            Figure("largest sandboxed peak", largest, "MB"),
        ],
        args,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
