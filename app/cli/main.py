"""`librarian`: run the whole stack (`up`) or one part of it, as production does."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from app.core.config import Settings

# Imports inside functions here are deliberate (`noqa: PLC0415`), for two reasons:
# - app.core.config validates the settings when imported: load_settings() imports it and turns a
#   refused configuration into one line on stderr, so nothing that imports it (app.observability,
#   app.cli.up/validate, ...) may be imported at module level;
# - `librarian up` starts each part as its own `librarian <part>` process, and each command pays
#   only for what it runs (python -X importtime: celery.bin.celery ~390 ms, structlog with our
#   logging ~200 ms, uvicorn ~70 ms).

# Loaded by main(), which turns a refused configuration into one line on stderr.
settings: Settings


def _refused(exc: ValidationError) -> str:
    """One line from pydantic's ValidationError: each error's field and reason, no input values."""
    reasons = []
    for error in exc.errors():
        reason = str(error.get("msg", "")).removeprefix("Value error, ")
        field = ".".join(str(part) for part in error.get("loc", ()))
        reasons.append(f"{field}: {reason}" if field else reason)
    return "librarian: configuration refused, not starting: " + "; ".join(reasons)


def load_settings() -> Settings:
    try:
        from app.core.config import settings as loaded  # noqa: PLC0415 (this import validates the settings)
    except ValidationError as exc:
        print(_refused(exc), file=sys.stderr, flush=True)
        sys.exit(2)
    return loaded


def _exec(argv: list[str]) -> None:
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn  # noqa: PLC0415 (per command, see top)

    from app.observability.logging import configure_logging  # noqa: PLC0415 (reads settings: after load_settings)
    from app.observability.metrics_dir import use_multiprocess_dir  # noqa: PLC0415 (per command, see top)

    port = args.port or settings.API_PORT
    # Multiprocess metrics in one process as in N (`--workers`): /metrics sums every process's files,
    # whichever process answers. The directory is this API's own (two APIs on one host never share
    # one), wiped for each run, set before the app (in this process or in uvicorn's) imports
    # prometheus_client.
    use_multiprocess_dir((settings.VAR_DIR / "metrics" / f"api-{port}").resolve())
    os.environ["LIBRARIAN_PROCESS"] = "api"
    configure_logging("api")
    # log_config=None: uvicorn's loggers keep going through our structlog formatter.
    # X-Forwarded-For is believed from FORWARDED_ALLOW_IPS only (rate limits key on the client).
    uvicorn.run(
        "app.api.main:app",
        host=args.host or settings.API_HOST,
        port=port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips or settings.FORWARDED_ALLOW_IPS,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    from app.observability.metrics_dir import use_multiprocess_dir  # noqa: PLC0415 (per command, see top)

    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Multiprocess metrics: set before Celery (and prometheus_client) start, wiped for each run.
    node = args.name.replace("%h", socket.gethostname())  # unique per worker, as Celery names it
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str((settings.VAR_DIR / "metrics" / node).resolve())
    use_multiprocess_dir(Path(metrics_dir))
    os.environ["LIBRARIAN_PROCESS"] = "worker"
    quiet = ["--quiet"] if settings.LOG_FORMAT == "json" else []  # no ASCII banner in JSON logs
    _exec(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.worker.celery_app:celery_app",
            *quiet,
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(args.concurrency or settings.WORKER_CONCURRENCY),
            "--queues",
            args.queues or settings.WORKER_QUEUES,
            "--hostname",
            args.name,
            "--without-mingle",
            "--without-gossip",
            "--statedb",
            str(settings.VAR_DIR / f"worker-{node}.state"),
            "--loglevel",
            settings.LOG_LEVEL,
        ]
    )


def cmd_beat(_: argparse.Namespace) -> None:
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    os.environ["LIBRARIAN_PROCESS"] = "beat"  # its lines say "service": "beat" (configure_logging)
    quiet = ["--quiet"] if settings.LOG_FORMAT == "json" else []  # no ASCII banner in JSON logs
    _exec(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.worker.celery_app:celery_app",
            *quiet,
            "beat",
            "--loglevel",
            settings.LOG_LEVEL,
        ]
    )


def cmd_flower(args: argparse.Namespace) -> None:
    if settings.flower_password_is_placeholder:
        print("warning: FLOWER_PASSWORD is a placeholder; set a real one", file=sys.stderr)
    # Add our account to any already configured (compose adds one for Prometheus' scrapes).
    accounts = [a for a in os.environ.get("FLOWER_BASIC_AUTH", "").split(",") if a]
    ours = f"{settings.FLOWER_USER}:{settings.FLOWER_PASSWORD}"
    os.environ["FLOWER_BASIC_AUTH"] = ",".join([ours, *[a for a in accounts if a != ours]])
    os.environ["LIBRARIAN_PROCESS"] = "flower"
    # Flower runs in this process, after our logging is set up: tornado's and Flower's loggers go
    # through the root logger, hence through the structlog formatter. --logging=none keeps tornado
    # from installing its own handler and level.
    from celery.bin.celery import main as celery_main  # noqa: PLC0415 (per command, see top)

    from app.observability.logging import configure_logging  # noqa: PLC0415 (reads settings: after load_settings)

    configure_logging("flower")
    sys.argv = [
        "celery",
        "-A",
        "app.worker.celery_app:celery_app",
        "flower",
        f"--address={args.host or settings.FLOWER_HOST}",
        f"--port={args.port or settings.FLOWER_PORT}",
        "--purge_offline_workers=300",
        "--logging=none",
    ]
    sys.exit(celery_main())


def cmd_redis(_: argparse.Namespace) -> None:
    import structlog  # noqa: PLC0415 (per command, see top)

    from app.core.embedded import embedded_server  # noqa: PLC0415 (per command, see top)
    from app.observability.logging import configure_logging  # noqa: PLC0415 (reads settings: after load_settings)

    os.environ["LIBRARIAN_PROCESS"] = "redis"
    configure_logging("redis")
    server = embedded_server(port=settings.EMBEDDED_REDIS_PORT, data_dir=settings.VAR_DIR / "valkey")
    server.start()
    structlog.get_logger("librarian.redis").info(
        "embedded Valkey ready", url=server.connection_url, data_dir=str(server.data_dir)
    )
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop and server.is_running():
        time.sleep(0.5)
    server.stop()
    sys.exit(0 if stop else 1)


def cmd_migrate(args: argparse.Namespace) -> None:
    import structlog  # noqa: PLC0415 (per command, see top)
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 (per command, see top)

    from app.core.config import mask_url  # noqa: PLC0415 (reads settings: after load_settings)
    from app.core.db import init_db, with_startup_retries  # noqa: PLC0415 (reads settings: after load_settings)
    from app.observability.logging import configure_logging  # noqa: PLC0415 (reads settings: after load_settings)

    os.environ["LIBRARIAN_PROCESS"] = "migrate"
    configure_logging("migrate")
    try:
        revision = with_startup_retries(init_db)  # retried while the database is not up yet
    except SQLAlchemyError as exc:
        print(f"librarian migrate: failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    if args.log:  # under a supervisor (`librarian up`): one JSON line like every other process's
        structlog.get_logger("librarian.migrate").info(
            "database migrated", revision=revision, database=mask_url(settings.database_url)
        )
    else:
        print(f"database at revision {revision} ({mask_url(settings.database_url)})", flush=True)


def cmd_probe_worker(args: argparse.Namespace) -> None:
    """Exit 0 when this host's worker heartbeat key exists and is fresh, 1 otherwise (one line why).

    A Kubernetes exec liveness probe: the heartbeat thread writes the key every 2 s with a 6 s TTL
    (app/worker/heartbeat.py), so a key that is there and recent means the worker's main process
    is alive and reaches Redis.
    """
    import json  # noqa: PLC0415 (per command, see top)

    from app.broker import keys  # noqa: PLC0415 (per command, see top)
    from app.core.redis import get_redis  # noqa: PLC0415 (reads settings: after load_settings)

    node = args.name.replace("%h", socket.gethostname())  # as cmd_worker names it
    key = keys.WORKER.format(hostname=node)
    try:
        raw = get_redis().get(key)
    except Exception as exc:  # noqa: BLE001 (any failure to read is a failed probe)
        print(f"worker {node}: heartbeat unreadable: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)
    if raw is None:
        print(f"worker {node}: no heartbeat ({key} missing or expired)", flush=True)
        sys.exit(1)
    try:
        age = time.time() - float(json.loads(raw)["timestamp"])
    except (ValueError, TypeError, KeyError):
        print(f"worker {node}: heartbeat unreadable ({key} is not a heartbeat)", flush=True)
        sys.exit(1)
    if age > args.max_age:
        print(f"worker {node}: heartbeat stale ({age:.1f} s old, over {args.max_age:g} s)", flush=True)
        sys.exit(1)
    print(f"worker {node}: alive (heartbeat {age:.1f} s old)", flush=True)


def cmd_probe_beat(_: argparse.Namespace) -> None:
    """Exit 0 when a beat holds the scheduling lock, 1 otherwise (one line why).

    The leading beat renews the lock every loop (app/worker/celery_app.py): a lock that is there
    means some beat schedules. A standby beat, waiting for the lock, is healthy too.
    """
    from app.broker import keys  # noqa: PLC0415 (per command, see top)
    from app.core.redis import get_redis  # noqa: PLC0415 (reads settings: after load_settings)

    try:
        ttl = get_redis().pttl(keys.BEAT_LOCK)
    except Exception as exc:  # noqa: BLE001 (any failure to read is a failed probe)
        print(f"beat: lock unreadable: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)
    if ttl < 0:
        print(f"beat: no beat schedules ({keys.BEAT_LOCK} missing or expired)", flush=True)
        sys.exit(1)
    print(f"beat: a beat schedules (lock {keys.BEAT_LOCK} held, {ttl / 1000:.1f} s left)", flush=True)


def cmd_up(args: argparse.Namespace) -> None:
    from app.cli.up import run_stack  # noqa: PLC0415 (reads settings: after load_settings)
    from app.observability.logging import configure_logging  # noqa: PLC0415 (reads settings: after load_settings)

    os.environ["LIBRARIAN_PROCESS"] = "supervisor"  # each child names itself (cmd_api, cmd_worker, ...)
    configure_logging("supervisor")  # "process started/exited" lines in the same format as the rest
    sys.exit(run_stack(with_flower=not args.no_flower, with_beat=not args.no_beat))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="librarian", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run everything on the embedded defaults, restart what crashes")
    up.add_argument("--no-flower", action="store_true")
    up.add_argument("--no-beat", action="store_true")
    up.set_defaults(func=cmd_up)

    migrate = sub.add_parser("migrate", help="upgrade the database to the latest schema (idempotent)")
    migrate.add_argument("--log", action="store_true", help="report the revision as a JSON log line, not text")
    migrate.set_defaults(func=cmd_migrate)

    api = sub.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=int, default=1)
    api.add_argument("--forwarded-allow-ips", help="proxies whose X-Forwarded-For is believed (FORWARDED_ALLOW_IPS)")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker (prefork)")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--queues", help="comma-separated queues (default: all)")
    worker.add_argument("--name", default="librarian@%h", help="worker node name")
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("beat", help="run Celery beat (periodic tasks)").set_defaults(func=cmd_beat)

    flower = sub.add_parser("flower", help="run Flower behind basic auth")
    flower.add_argument("--host")
    flower.add_argument("--port", type=int)
    flower.set_defaults(func=cmd_flower)

    sub.add_parser("redis", help="run the embedded Valkey server").set_defaults(func=cmd_redis)

    probe = sub.add_parser("probe", help="health probes for Kubernetes exec checks (exit 0 healthy, 1 not)")
    probes = probe.add_subparsers(dest="probe", required=True)
    probe_worker = probes.add_parser("worker", help="this host's worker heartbeat is present and fresh")
    probe_worker.add_argument("--name", default="librarian@%h", help="worker node name, as given to `librarian worker`")
    probe_worker.add_argument("--max-age", type=float, default=15.0, help="seconds a heartbeat may be old")
    probe_worker.set_defaults(func=cmd_probe_worker)
    probes.add_parser("beat", help="a beat holds the scheduling lock").set_defaults(func=cmd_probe_beat)

    from app.cli.batches import add_batches_parser  # noqa: PLC0415 (reads settings: after load_settings)
    from app.cli.submit import add_submit_parser  # noqa: PLC0415 (reads settings: after load_settings)
    from app.cli.validate import add_validate_parser  # noqa: PLC0415 (reads settings: after load_settings)

    add_submit_parser(sub)
    add_batches_parser(sub)
    add_validate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    global settings
    settings = load_settings()
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
