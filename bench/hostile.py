"""Hostile models through the validation sandbox: file size, peak memory, time and outcome per case.

    PYTHONPATH=. python bench/hostile.py [--memory-mb 512] [--timeout-s 20]

Generates tests/fixtures/hostile_3dm.py's models, then validates each as a worker does
(app.validation.guarded: the declared-size guard, then the engine in a sandboxed child under the
limits) and prints a markdown table for docs/reliability.md. Peak memory is the sandboxed child's
peak resident size (it includes the parent's pages it touched: ~40 MB for a worker or this script).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.validation import UnreadableModelError  # noqa: E402
from app.validation.engine import validate_path  # noqa: E402
from app.validation.guarded import declared_facts, refusal  # noqa: E402
from app.validation.reader import inspect_file  # noqa: E402
from app.validation.sandbox import Limits, run_sandboxed  # noqa: E402


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
    return f"rejected: {code} ({result.details.get('limit') or result.details.get('signal')})", \
        result.details["seconds"], peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--timeout-s", type=float, default=20)
    args = parser.parse_args(argv)
    limits = Limits(args.memory_mb, args.timeout_s)
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        # generated in a child, so this process (which the sandboxed children copy) stays small
        subprocess.run([sys.executable, "-m", "tests.fixtures.hostile_3dm", tmp], cwd=ROOT, check=True,
                       capture_output=True)
        cases = {path.stem: path for path in sorted(Path(tmp).glob("*.3dm"), key=lambda p: p.stat().st_mtime)}
        print(f"limits: VALIDATION_MAX_MEMORY_MB={limits.memory_mb}, VALIDATION_TIMEOUT_S={limits.timeout_s:g}\n")
        print("| case | file size | peak memory | time | outcome |")
        print("| --- | ---: | ---: | ---: | --- |")
        for name, path in cases.items():
            verdict, seconds, peak = outcome_of(path, limits)
            memory = f"{peak:,.0f} MB" if peak is not None else "no child"
            print(f"| {name} | {path.stat().st_size:,} B | {memory} | {seconds:.2f} s | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
