"""Acknowledged means kept: what REDIS_PUBLISH_WAIT_REPLICAS=1 costs per submit.

    python -m bench.publish_wait [--submits 2000] [--rounds 5] [--json PATH]

A Sentinel set on loopback (1 primary, 2 replicas, 1 sentinel; tests/utils/sentinel.py) and the
API's publish path in one process: `app.api.submit.submit` (issued-id record, then Celery's
send_task through Librarian's Sentinel transport with the journal), as `POST /api/v1/tasks/test`
runs it minus HTTP. Two Celery apps on the same broker differ only in `publish_wait_replicas`
(0: off; 1: `WAIT 1 500` after each publish, on its connection). Rounds alternate the order, so
drift and foreign load fall on both.

Figures: wall time per submit (median over rounds of each round's mean, and the p99 of all
submits), WAIT on against WAIT off, and their ratio. Nobody consumes: the queues are emptied
between rounds.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import machine, table
from tests.utils.sentinel import SentinelSet

VARIANTS = ("off", "wait1")


def make_app(base: Any, wait_replicas: int) -> Any:
    from celery import Celery

    app = Celery(f"bench-wait-{wait_replicas}", set_as_current=False)
    app.conf.update(base.conf.table(with_defaults=False, censored=False))
    options = dict(app.conf.broker_transport_options)
    options.update(publish_wait_replicas=wait_replicas, publish_wait_ms=500)
    app.conf.broker_transport_options = options
    return app


def one_round(app: Any, client: Any, submits: int) -> list[float]:
    from app.api.submit import submit

    times = []
    for i in range(submits):
        t0 = time.perf_counter()
        submit(app, client, "librarian.demo.process", kwargs={"message": f"m{i}", "steps": 1})
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=2000, help="submits per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    add_json_option(parser)
    args = parser.parse_args(argv)

    nodes = SentinelSet(
        Path(tempfile.mkdtemp(prefix="bench-wait-")),
        password=secrets.token_hex(12),
        sentinel_password=secrets.token_hex(12),
        sentinels=1,
    ).start()
    try:
        os.environ.update(nodes.env(), ENVIRONMENT="test", FLOWER_PASSWORD=secrets.token_hex(8))
        # Imported here: the settings are read at import, once the environment names the broker.
        from app.core.redis import get_redis
        from app.worker.celery_app import celery_app

        apps = {"off": make_app(celery_app, 0), "wait1": make_app(celery_app, 1)}
        client = get_redis()
        means: dict[str, list[float]] = {v: [] for v in VARIANTS}
        every: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for round_no in range(args.rounds):
            order = VARIANTS if round_no % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                times = one_round(apps[variant], client, args.submits)
                means[variant].append(statistics.mean(times))
                every[variant].extend(times)
                nodes.primary_client().flushdb()
    finally:
        nodes.stop()

    median = {v: statistics.median(means[v]) for v in VARIANTS}
    p99 = {v: statistics.quantiles(every[v], n=100)[98] for v in VARIANTS}
    ratio = median["wait1"] / median["off"]
    print(f"{args.submits} submits x {args.rounds} rounds, 2 replicas on loopback, {machine()}")
    print(
        table(
            ("publish", "ms/submit (median of round means)", "p99 ms", "ratio to off"),
            [
                (v, f"{median[v] * 1e3:.3f}", f"{p99[v] * 1e3:.3f}", f"{median[v] / median['off']:.2f}")
                for v in VARIANTS
            ],
        )
    )
    write_json(
        args.json,
        "publish_wait",
        [
            Figure("submit with WAIT 1, wall time", median["wait1"] * 1e3, "ms", median["off"] * 1e3),
            Figure("submit with WAIT 1 / without", ratio, "ratio"),
            Figure("submit with WAIT 1, p99", p99["wait1"] * 1e3, "ms", p99["off"] * 1e3),
        ],
        args,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
