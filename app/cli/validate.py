"""`librarian validate FILE...`: validate .3dm models offline, with the workers' engine.

No server, broker or database: this module reads settings (RULESETS_DIR, DEFAULT_RULESET, the
VALIDATION_* limits, MAX_REPORT_BYTES) and validates as a worker does, with
`app.validation.guarded.validate_guarded`: the declared-size guard, then the engine in a sandboxed
child under the time and memory limits. A single file is validated in this process; several
go through a process pool whose children validate one file each and exit (max_tasks_per_child=1),
whatever --jobs is, because rhino3dm keeps every model it read alive (~50 MB per 20k objects).
max_tasks_per_child=1 exactly also stays clear of CPython gh-115634 (pool deadlock for values > 1).

Exit code: 0 every file passed, 1 some file was rejected, 2 some file could not be validated or
the ruleset/arguments are bad (2 wins over 1). Output formats: app/cli/validate_output.py.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.validate_output import FileResult, render_json, render_junit, render_table
from app.core.config import settings
from app.validation import Ruleset, RulesetError, UnreadableModelError, build_ruleset, load_dir, load_file
from app.validation.guarded import validate_guarded
from app.validation.sandbox import Limits

EXIT_PASSED, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2


class UsageError(Exception):
    """An argument that cannot be used (exit 2, before anything is validated)."""


def add_validate_parser(sub: Any) -> None:
    parser = sub.add_parser("validate", help="validate .3dm files offline (no server), for CI pipelines")
    parser.add_argument("files", nargs="+", metavar="FILE", help=".3dm files or directories (searched recursively)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--ruleset", metavar="NAME", help="a ruleset in RULESETS_DIR (default: DEFAULT_RULESET)")
    choice.add_argument("--rules", metavar="FILE.toml", type=Path, help="a ruleset TOML file")
    parser.add_argument("--format", choices=("table", "json", "junit"), default="table")
    parser.add_argument("--details", action="store_true", help="table: list every finding kept in the reports")
    parser.add_argument("--jobs", type=positive_int, default=1, help="files validated in parallel (default 1)")
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="stop a file's validation after this long (default: VALIDATION_TIMEOUT_S)",
    )
    parser.add_argument(
        "--max-memory",
        metavar="MB",
        type=positive_int,
        help="memory a file's validation may use (default: VALIDATION_MAX_MEMORY_MB)",
    )
    parser.add_argument(
        "--output", metavar="PATH", type=Path, help="write the json/junit output here (the table still goes to stdout)"
    )
    parser.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> None:
    sys.exit(run(args))


def run(args: argparse.Namespace) -> int:
    try:
        if args.output is not None and args.format == "table":
            raise UsageError("--output needs --format json or junit")
        ruleset = resolve_ruleset(args.ruleset, args.rules)
        files = collect_files(args.files)
    except (RulesetError, UsageError) as exc:
        print(f"librarian validate: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    started = time.perf_counter()
    with _progress(len(files)) as advance:
        limits = Limits(
            args.max_memory or settings.validation_max_memory_mb, args.timeout or settings.VALIDATION_TIMEOUT_S
        )
        results = validate_files(files, ruleset, jobs=args.jobs, limits=limits, on_done=advance)
    elapsed = time.perf_counter() - started
    if args.format == "table" or args.output is not None:  # with --output, the CI log still shows the table
        render_table(results, details=args.details, elapsed=elapsed, ruleset=ruleset)
    if args.format != "table":
        data = render_json(results) if args.format == "json" else render_junit(results, elapsed)
        try:
            _write(data, args.output)
        except OSError as exc:
            print(f"librarian validate: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_UNUSABLE
    return exit_code(results)


def resolve_ruleset(name: str | None, rules_file: Path | None) -> Ruleset:
    """--rules FILE, else --ruleset NAME (or DEFAULT_RULESET) from RULESETS_DIR; every file there is checked."""
    if rules_file is not None:
        return load_file(rules_file)
    name = name or settings.DEFAULT_RULESET
    available = load_dir(settings.RULESETS_DIR)
    if name in available:
        return available[name]
    if name == "default":
        return build_ruleset("default", {})  # the built-in defaults
    names = ", ".join(sorted(available)) or "none"
    raise RulesetError(f"unknown ruleset {name!r}; available in {settings.RULESETS_DIR}: {names}", field="ruleset")


def collect_files(arguments: list[str]) -> list[str]:
    """Files as given; a directory becomes every *.3dm under it (any case), recursively, sorted."""
    files: list[str] = []
    for argument in arguments:
        directory = Path(argument)
        if not directory.is_dir():
            files.append(argument)
            continue
        found = sorted(p for p in directory.rglob("*") if p.suffix.lower() == ".3dm" and p.is_file())
        if not found:
            raise UsageError(f"no .3dm files in directory {argument}")
        files += [str(p) for p in found]
    return files


def check_file(file: str, ruleset: Ruleset, limits: Limits) -> FileResult:
    """Validate one file; an unreadable one is a result, not an exception."""
    started = time.perf_counter()
    try:
        report = validate_guarded(
            file, limits=limits, ruleset=ruleset, file_name=Path(file).name, max_report_bytes=settings.MAX_REPORT_BYTES
        )
    except UnreadableModelError as exc:
        return FileResult(
            file, "unreadable", None, {"code": exc.code, "reason": exc.reason}, time.perf_counter() - started
        )
    status = "passed" if report["summary"]["passed"] else "rejected"
    return FileResult(file, status, report, None, time.perf_counter() - started)


def validate_files(
    files: list[str],
    ruleset: Ruleset,
    *,
    jobs: int,
    limits: Limits | None = None,
    on_done: Callable[[], None] = lambda: None,
) -> list[FileResult]:
    """One result per file, in the order of `files`."""
    limits = limits or Limits(*settings.validation_limits)
    if len(files) == 1:
        results = [_guarded(files[0], lambda: check_file(files[0], ruleset, limits))]
        on_done()
        return results
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(files)), mp_context=_pool_context(), max_tasks_per_child=1
    ) as pool:
        futures: list[Future[FileResult]] = [pool.submit(check_file, file, ruleset, limits) for file in files]
        for _ in as_completed(futures):
            on_done()
    return [_guarded(file, future.result) for file, future in zip(files, futures, strict=True)]


def _pool_context() -> multiprocessing.context.BaseContext:
    """Children forked from a server that imported this module once: a fresh process per file
    costs milliseconds, not an interpreter start (max_tasks_per_child rules out plain fork)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _guarded(file: str, call: Callable[[], FileResult]) -> FileResult:
    """A crash of the engine (or of a pool child) is reported for its file; the run goes on."""
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - any failure here is this file's result
        error = {"code": "internal_error", "reason": f"{type(exc).__name__}: {exc}"}
        return FileResult(file, "failed", None, error, 0.0)


def exit_code(results: list[FileResult]) -> int:
    statuses = {result.status for result in results}
    if statuses & {"unreadable", "failed"}:
        return EXIT_UNUSABLE
    return EXIT_REJECTED if "rejected" in statuses else EXIT_PASSED


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for runs over several files, only when stderr is a terminal."""
    if total < 2 or not sys.stderr.isatty():
        yield lambda: None
        return
    columns = (TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("validate", total=total)
        yield lambda: progress.advance(task)


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value
