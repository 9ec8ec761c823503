"""Validation throughput and memory on the large generated fixture, or on a corpus of real models.

    python -m bench.validation [--objects 20000] [--repeat 5] [--file PATH] [--json PATH]
    python -m bench.validation --corpus tests/fixtures/real [--repeat 3] [--json PATH]

Throughput: the validator (`validate_path`) is compared with a plain rhino3dm
read-and-walk of the same file (File3dm.Read, then every object's Geometry and
Attributes touched once: the minimum any validator must do). Runs are
interleaved A/B, each in a fresh subprocess (rhino3dm never frees the wrappers
a table walk creates, so in-process repeats would slow each other down); the
timer inside the child covers only the work, not interpreter start-up or
imports. Throughput uses the median run; ratio = validator / plain throughput
(target >= 0.8).

Memory: peak RSS (VmHWM of the child itself, from /proc; ru_maxrss elsewhere)
of one validation in a fresh process. Each side's INCREASE of the peak over a process that has made
the same imports (rhino3dm; rhino3dm + app.validation) is the memory the model costs it; the target
is the validator's increase <= 1.15x the plain read-and-walk's (rhino3dm's in-memory model alone
is several times the file size).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import ROOT

TIME_TARGET = 0.8
RSS_TARGET = 1.15
CHILD = r"""
import json, resource, sys, time
mode, path = sys.argv[1], sys.argv[2]

def peak_rss_kb():
    # VmHWM belongs to this process image; ru_maxrss would also carry the
    # high-water mark of the parent we were forked from.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

import rhino3dm
if mode in ("validate", "baseline-validate"):
    from app.validation import validate_path
objects = 0
started = time.perf_counter()
if mode == "plain":
    model = rhino3dm.File3dm.Read(path)
    for obj in model.Objects:
        obj.Geometry
        obj.Attributes
        objects += 1
elif mode == "validate":
    objects = validate_path(path)["summary"]["objects"]
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "objects": objects, "maxrss_kb": peak_rss_kb()}))
"""


def run_child(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path)], capture_output=True, text=True, env=_child_env(), check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_fixture(objects: int, directory: Path) -> Path:
    """Generate the large fixture in a child so this process stays small."""
    code = (
        "import sys; from pathlib import Path; from tests.fixtures.models_3dm import large_model; "
        "print(large_model(Path(sys.argv[1]), int(sys.argv[2])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(directory), str(objects)],
        capture_output=True,
        text=True,
        env=_child_env(),
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def measure(path: Path, repeat: int) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "validate": []}
    run_child("plain", path)  # warm the page cache so neither side pays the disk read
    for i in range(repeat):
        order = ("plain", "validate") if i % 2 == 0 else ("validate", "plain")
        for mode in order:
            runs[mode].append(run_child(mode, path))
    return runs


def report(
    path: Path, runs: dict[str, list[dict[str, float]]], baseline_kb: float, val_baseline_kb: float
) -> tuple[str, list[Figure]]:
    size = path.stat().st_size
    mb = size / 1e6
    t_plain = statistics.median(r["seconds"] for r in runs["plain"])
    t_val = statistics.median(r["seconds"] for r in runs["validate"])
    objects = runs["validate"][0]["objects"]
    ratio = t_plain / t_val
    peak_kb = max(r["maxrss_kb"] for r in runs["validate"])
    plain_peak_kb = max(r["maxrss_kb"] for r in runs["plain"])
    increase = (peak_kb - val_baseline_kb) * 1024 / size
    plain_increase = (plain_peak_kb - baseline_kb) * 1024 / size
    model_ratio = (peak_kb - val_baseline_kb) / (plain_peak_kb - baseline_kb)
    print(f"file: {path} ({size:,d} bytes, {objects} objects)")
    for mode, t in (("plain read+walk", t_plain), ("validator", t_val)):
        times = " ".join(f"{r['seconds']:.3f}" for r in runs["plain" if mode.startswith("plain") else "validate"])
        print(f"{mode:16s} median {t:.3f} s  ({mb / t:.1f} MB/s, {objects / t:,.0f} objects/s)  runs: {times}")
    print(
        f"peak RSS: validator {peak_kb / 1024:.1f} MiB absolute, baselines (import rhino3dm / + app.validation) "
        f"{baseline_kb / 1024:.1f} / {val_baseline_kb / 1024:.1f} MiB, "
        f"increase {(peak_kb - val_baseline_kb) / 1024:.1f} MiB = {increase:.2f}x file; "
        f"plain read+walk increase {(plain_peak_kb - baseline_kb) / 1024:.1f} MiB = {plain_increase:.2f}x file"
    )
    figures = [
        Figure(f"{objects} objects: validator / plain read throughput", ratio, "ratio", target=(">=", TIME_TARGET)),
        Figure(
            f"{objects} objects: peak RSS increase vs the plain read's", model_ratio, "ratio", target=("<=", RSS_TARGET)
        ),
        Figure(f"{objects} objects: validator throughput", mb / t_val, "MB/s", baseline=mb / t_plain),
    ]
    return (
        f"validation: {mb / t_val:.1f} MB/s, {objects / t_val:,.0f} objects/s, ratio {ratio:.2f}x of plain read "
        f"(target >= {TIME_TARGET}), peak RSS increase {model_ratio:.2f}x the plain read's (target <= "
        f"{RSS_TARGET}x; {increase:.2f}x file size, plain read alone {plain_increase:.2f}x)"
    ), figures


def corpus(directory: Path, repeat: int) -> tuple[str, list[Figure]]:
    """Every model in `directory`: time summed over the files (median of `repeat` interleaved runs
    each), memory as the validator's peak-RSS increase over the plain read's, per file."""
    files = sorted(directory.glob("*.3dm"))
    base_plain = min(run_child("baseline", files[0])["maxrss_kb"] for _ in range(3))
    base_val = min(run_child("baseline-validate", files[0])["maxrss_kb"] for _ in range(3))
    t_plain = t_val = 0.0
    ratios: list[tuple[float, str, float, float]] = []
    print(f"{'file':38s} {'objects':>7s} {'plain s':>8s} {'valid. s':>8s} {'plain MiB':>9s} {'valid. MiB':>10s}")
    for path in files:
        runs = measure(path, repeat)
        tp = statistics.median(r["seconds"] for r in runs["plain"])
        tv = statistics.median(r["seconds"] for r in runs["validate"])
        t_plain, t_val = t_plain + tp, t_val + tv
        mp = (min(r["maxrss_kb"] for r in runs["plain"]) - base_plain) / 1024
        mv = (min(r["maxrss_kb"] for r in runs["validate"]) - base_val) / 1024
        ratios.append((mv / mp if mp > 0.5 else 1.0, path.name, mp, mv))
        print(f"{path.name[:38]:38s} {runs['validate'][0]['objects']:7d} {tp:8.3f} {tv:8.3f} {mp:9.1f} {mv:10.1f}")
    big = [r for r in ratios if r[2] >= 4.0]  # below a few MiB the increase is allocator noise
    worst = max(big) if big else None
    figures = [
        Figure(
            f"corpus ({len(files)} files): validator / plain read time",
            t_plain / t_val,
            "ratio",
            target=(">=", TIME_TARGET),
        ),
        Figure(
            "corpus: worst peak RSS increase vs the plain read's",
            worst[0] if worst else float("nan"),
            "ratio",
            target=("<=", RSS_TARGET),
        ),
        Figure("corpus: validator time, all files", t_val, "s", baseline=t_plain),
    ]
    return (
        f"corpus {directory} ({len(files)} files): time ratio {t_plain / t_val:.2f}x of plain read+walk "
        f"(target >= 0.8; plain {t_plain:.2f} s, validator {t_val:.2f} s); peak RSS increase over the plain "
        f"read's, files whose model takes >= 4 MiB ({len(big)}): median "
        f"{statistics.median(r[0] for r in big) if big else float('nan'):.2f}x, worst "
        f"{worst[0] if worst else float('nan'):.2f}x ({worst[1] if worst else '-'}) (target <= {RSS_TARGET}x)"
    ), figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--file", type=Path, help="benchmark this .3dm instead of generating one")
    parser.add_argument("--corpus", type=Path, help="benchmark every .3dm in this directory (e.g. tests/fixtures/real)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.corpus:
        text, figures = corpus(args.corpus, args.repeat)
        print(text)
        write_json(args.json, "validation", figures, args)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        path = args.file or make_fixture(args.objects, Path(tmp))
        baseline_kb = min(run_child("baseline", path)["maxrss_kb"] for _ in range(3))
        val_baseline_kb = min(run_child("baseline-validate", path)["maxrss_kb"] for _ in range(3))
        runs = measure(path, args.repeat)
        text, figures = report(path, runs, baseline_kb, val_baseline_kb)
        print(text)
    write_json(args.json, "validation", figures, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
