"""`librarian submit FILE... [--wait]`: upload models through the API, show progress and results.

The API token (when the API has API_TOKENS) comes from LIBRARIAN_TOKEN, or `--token` (visible to
other users in the process list: prefer the variable).

Output: a table on a terminal; tab-separated rows (file, status, errors, warnings, part id or
reason, never cut) when stdout is not a terminal; `--format json` for scripts. Progress bars go to
stderr on a terminal only, and are done before the results are printed. Exit code: 0 when every
file was accepted (and, with --wait, validated), 1 when any was refused, rejected or failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.core.config import settings

FINISHED = {"validated", "rejected", "failed"}
STYLE = {"validated": "green", "rejected": "yellow", "failed": "red", "error": "red"}


def add_submit_parser(sub: Any) -> None:
    parser = sub.add_parser("submit", help="upload .3dm files for validation through the API")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--api", default=f"http://{settings.API_HOST}:{settings.API_PORT}", help="API base URL")
    parser.add_argument("--wait", action="store_true", help="wait for every validation and show the results")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait with --wait")
    parser.add_argument("--owner", help="owner/user id recorded on the parts (with a token: its owner, the default)")
    parser.add_argument(
        "--token", help="API bearer token (default: $LIBRARIAN_TOKEN); --token=VALUE if it begins with -"
    )
    parser.add_argument("--ruleset", help="ruleset name (GET /api/v1/rulesets); default: the API's DEFAULT_RULESET")
    parser.add_argument(
        "--format",
        choices=("auto", "table", "plain", "json"),
        default="auto",
        help="auto: a table on a terminal, tab-separated rows otherwise",
    )
    parser.set_defaults(func=cmd_submit)


def _upload(client: httpx.Client, path: Path, owner: str | None, ruleset: str | None) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            answer = client.post(
                "/api/v1/parts",
                files={"file": (path.name, handle, "application/octet-stream")},
                data={"owner": owner} if owner else None,
                params={"ruleset": ruleset} if ruleset else None,
            )
    except OSError as exc:
        return {"status": "error", "error": f"cannot read {path}: {exc.strerror or exc}"}
    except httpx.HTTPError as exc:
        return {"status": "error", "error": f"API unreachable: {type(exc).__name__}"}
    if answer.status_code != 202:
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = answer.text[:200]
        return {"status": "error", "error": f"HTTP {answer.status_code}: {detail}"}
    return answer.json()


def cmd_submit(args: argparse.Namespace) -> None:
    console = Console(stderr=True)
    rows: dict[Path, dict[str, Any]] = {}
    output = args.format if args.format != "auto" else ("table" if sys.stdout.isatty() else "plain")
    token = args.token or os.environ.get("LIBRARIAN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with httpx.Client(base_url=args.api, timeout=300, headers=headers) as client, _progress(console) as progress:
        bars = {path: progress.add_task(path.name, total=100) for path in args.files}
        for path in args.files:
            rows[path] = _upload(client, path, args.owner, args.ruleset)
            progress.update(
                bars[path],
                completed=100 if rows[path]["status"] == "error" else 5,
                description=f"{path.name} [{rows[path]['status']}]",
            )
        deadline = time.monotonic() + args.timeout
        while args.wait and time.monotonic() < deadline:
            pending = [p for p, row in rows.items() if row.get("part_id") and row["status"] not in FINISHED]
            if not pending:
                break
            for path in pending:
                try:
                    rows[path] = {**rows[path], **client.get(f"/api/v1/parts/{rows[path]['part_id']}").json()}
                except (httpx.HTTPError, ValueError):
                    continue
                row = rows[path]
                done = 100 if row["status"] in FINISHED else max(5, row.get("progress") or 5)
                progress.update(bars[path], completed=done, description=f"{path.name} [{row['status']}]")
            time.sleep(0.5)
    _print(rows, output)
    bad = any(row["status"] in {"error", "failed", "rejected"} for row in rows.values())
    sys.exit(1 if bad else 0)


def _print(rows: dict[Path, dict[str, Any]], output: str) -> None:
    if output == "table":
        Console().print(_table(rows))
        return
    results = [
        {
            "file": str(path),
            "status": row["status"],
            "part_id": row.get("part_id"),
            "task_id": row.get("task_id"),
            "counts": (row.get("summary") or {}).get("counts"),
            "error": row.get("error"),
        }
        for path, row in rows.items()
    ]
    if output == "json":
        print(json.dumps(results, indent=1))
        return
    for result in results:
        counts = result["counts"] or {}
        print(
            "\t".join(
                [
                    result["file"],
                    result["status"],
                    str(counts.get("error", "")),
                    str(counts.get("warning", "")),
                    result["error"] or str(result["part_id"] or ""),
                ]
            )
        )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def _table(rows: dict[Path, dict[str, Any]]) -> Table:
    table = Table(title="Librarian validation")
    for column in ("file", "status", "errors", "warnings", "part id / reason"):
        table.add_column(column)
    for path, row in rows.items():
        counts = (row.get("summary") or {}).get("counts") or {}
        status = row["status"]
        table.add_row(
            str(path),
            f"[{STYLE.get(status, 'white')}]{status}[/]",
            str(counts.get("error", "")),
            str(counts.get("warning", "")),
            row.get("error") or str(row.get("part_id", "")),
        )
    return table
