"""`librarian batches retry ID`: send a batch's dead-lettered items through the pipeline again.

The same call as `POST /api/v1/batches/{id}/retry`, made through the API as `librarian submit`
does: each item in `<stage>_failed` starts again at the stage that failed, items never sent
(`pending`) from the start. Exit code 0 when the API took the retry, 1 otherwise (unknown batch,
API unreachable or refusing), with the reason on stderr. The API token, as for `librarian submit`:
LIBRARIAN_TOKEN, or `--token`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any, NoReturn

import httpx

from app.core.config import settings


def add_batches_parser(sub: Any) -> None:
    parser = sub.add_parser("batches", help="act on batches (staged imports) through the API")
    actions = parser.add_subparsers(dest="action", required=True)
    retry = actions.add_parser("retry", help="re-send a batch's dead-lettered items from the stage that failed")
    retry.add_argument("batch_id", help="the batch id (POST /api/v1/batches answered it)")
    retry.add_argument("--api", default=f"http://{settings.API_HOST}:{settings.API_PORT}", help="API base URL")
    retry.add_argument(
        "--token", help="API bearer token (default: $LIBRARIAN_TOKEN); --token=VALUE if it begins with -"
    )
    retry.add_argument("--format", choices=("plain", "json"), default="plain", help="json: the API's answer")
    retry.set_defaults(func=cmd_retry)


def _fail(message: str) -> NoReturn:
    print(f"librarian: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def cmd_retry(args: argparse.Namespace) -> None:
    try:
        batch_id = uuid.UUID(args.batch_id)
    except ValueError:
        _fail(f"not a batch id: {args.batch_id!r} (a UUID, as POST /api/v1/batches answered)")
    token = args.token or os.environ.get("LIBRARIAN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        with httpx.Client(base_url=args.api, timeout=30, headers=headers) as client:
            answer = client.post(f"/api/v1/batches/{batch_id}/retry")
    except httpx.HTTPError as exc:
        _fail(f"API unreachable at {args.api}: {type(exc).__name__}")
    if answer.status_code == 404:
        _fail(f"unknown batch {batch_id}")
    if answer.status_code != 202:
        try:
            detail = answer.json().get("detail")
        except ValueError:
            detail = answer.text[:200]
        _fail(f"retry of batch {batch_id} refused: HTTP {answer.status_code}: {detail}")
    body = answer.json()
    if args.format == "json":
        print(json.dumps(body))
    else:
        count = body["retried"]
        print(f"batch {batch_id}: {count} item{'' if count == 1 else 's'} sent again")
