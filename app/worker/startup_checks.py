"""Checks a worker runs at start-up: refuse unsafe time limits and bad rulesets, warn about an
evicting broker."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from sqlalchemy.exc import SQLAlchemyError

from app.core.config import settings
from app.core.db import init_db, session_scope, with_startup_retries
from app.core.rulesets import sync_files
from app.validation.rulesets import RulesetError

log = structlog.get_logger("librarian.worker.startup")


class UnsafeConfigurationError(SystemExit):
    """A configuration that would make Redis redeliver running tasks.

    A SystemExit, not a RuntimeError: the check runs in a `worker_init` signal receiver, and
    Celery's signal dispatcher logs and swallows every Exception a receiver raises, so an ordinary
    exception left the unsafe worker running. SystemExit goes through it and stops the worker
    before its pool starts (exit status 1, the reason on stderr and in the log).
    """


class RulesetsUnusable(SystemExit):
    """A ruleset file that does not load, or a DEFAULT_RULESET that does not exist: a SystemExit
    for the reason UnsafeConfigurationError is one (the worker stops, status 1, reason logged)."""


def prepare_database() -> None:
    """Upgrade the database to the latest migration (init_db, idempotent: under compose the `migrate`
    service already did), then store changed ruleset files as new versions (app/core/rulesets.py).

    A bad ruleset file stops the worker; a database that cannot be reached does not (the tasks
    retry, /health reports it), as before rulesets existed.
    """

    def prepare() -> None:
        init_db()
        with session_scope() as session:
            sync_files(session)

    try:
        with_startup_retries(prepare)
    except RulesetError as exc:
        log.critical("rulesets unusable, worker not started", error=str(exc), field=exc.field)
        raise RulesetsUnusable(str(exc)) from exc
    except SQLAlchemyError as exc:
        log.error("database init failed", error=type(exc).__name__)


def longest_hard_limit(app: Celery) -> int:
    limits = [app.conf.task_time_limit or 0]
    for task in app.tasks.values():
        limit = getattr(task, "time_limit", None)
        if limit:
            limits.append(int(limit))
    return max(limits)


def check_visibility_timeout(app: Celery) -> None:
    """A task must finish (hard limit) before Redis' visibility timeout hands it to another worker."""
    visibility = int(app.conf.broker_transport_options.get("visibility_timeout", 3600))
    needed = longest_hard_limit(app) + settings.MAX_TASK_COUNTDOWN
    if visibility <= needed:
        reason = (
            f"BROKER_VISIBILITY_TIMEOUT={visibility}s must be larger than the longest hard time "
            f"limit plus MAX_TASK_COUNTDOWN ({needed}s): otherwise Redis redelivers a running "
            f"task to a second worker."
        )
        log.critical("unsafe configuration, worker not started", reason=reason)
        raise UnsafeConfigurationError(reason)


def check_broker_durability(client: Any) -> list[str]:
    """Warnings about a broker that may lose messages (evicting keys, no persistence)."""
    warnings: list[str] = []
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
        appendonly = client.config_get("appendonly").get("appendonly", "no")
        save = client.config_get("save").get("save", "")
    except Exception as exc:  # noqa: BLE001 (managed Redis often disables CONFIG)
        return [f"could not read the broker's configuration ({type(exc).__name__}): check by hand"]
    if policy and policy != "noeviction":
        warnings.append(f"broker maxmemory-policy is {policy!r}: Redis may evict queued tasks; use 'noeviction'")
    if appendonly != "yes" and not save:
        warnings.append("broker has no persistence (appendonly no, no save): a restart loses queued tasks")
    return warnings
