"""Health: each dependency checked for real, the failing one named, no secret in any answer.

`/health-check/redis` and `/health-check/celery` answer seed 002's shape: `status` healthy or
unhealthy (200 or 503) and a `timestamp` (ISO 8601, UTC), plus the check's own fields. `/health`
sums the components up, each `ok` or `down`, as `ok`, `degraded` or `down`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from app.api.deps import CeleryDep, RedisDep
from app.core.config import mask_url, settings
from app.core.db import ping_db
from app.core.redis import sentinel_status
from app.core.workers import live_workers, mark_stalled

router = APIRouter(tags=["health"])


def _redis_status(client: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        client.ping()
        info = client.info(section="server") | client.info(section="memory")
    except Exception as exc:  # noqa: BLE001 (any failure reports the broker down)
        return {"status": "down", "url": mask_url(settings.redis_url), "error": type(exc).__name__}
    body = {
        "status": "ok",
        "url": mask_url(settings.redis_url),
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "version": info.get("valkey_version") or info.get("redis_version"),
        "used_memory_bytes": info.get("used_memory"),
    }
    if settings.redis_sentinel is not None:
        try:
            body["sentinel"] = sentinel_status()
        except Exception as exc:  # noqa: BLE001 (the primary answered: report the sentinels' failure, stay ok)
            body["sentinel"] = {"error": type(exc).__name__}
    return body


def _workers_status(client: Any) -> dict[str, Any]:
    try:
        workers = live_workers(client)
    except Exception as exc:  # noqa: BLE001 (any failure reports the workers down)
        return {"status": "down", "workers": [], "error": type(exc).__name__}
    if not workers:
        return {"status": "down", "workers": [], "error": "no live worker heartbeat"}
    try:
        mark_stalled(client, workers, settings.WORKER_STALL_SECONDS)
    except Exception as exc:  # noqa: BLE001 (any failure reports the workers down)
        return {"status": "down", "workers": workers, "error": type(exc).__name__}
    if all(w["stalled"] for w in workers):
        return {
            "status": "down",
            "count": len(workers),
            "workers": workers,
            "error": "every live worker is stalled: messages wait and none is taken",
        }
    return {"status": "ok", "count": len(workers), "workers": workers}


def _db_status() -> dict[str, Any]:
    try:
        ping_db()
    except Exception as exc:  # noqa: BLE001 (any failure reports the database down)
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok"}


def _check_answer(body: dict[str, Any]) -> JSONResponse:
    """A component's status as a health-check answer: healthy (200) or unhealthy (503), timestamped."""
    healthy = body["status"] == "ok"
    answer = {**body, "status": "healthy" if healthy else "unhealthy", "timestamp": datetime.now(UTC).isoformat()}
    return JSONResponse(answer, status_code=200 if healthy else 503)


@router.get("/health-check/redis")
def redis_health(client: RedisDep) -> JSONResponse:
    return _check_answer(_redis_status(client))


@router.get("/health-check/celery")
def celery_health(
    client: RedisDep,
    celery: CeleryDep,
    deep: Annotated[bool, Query(description="Also ping workers over the broker (slower)")] = False,
) -> JSONResponse:
    body = _workers_status(client)
    if deep and body["status"] == "ok":
        try:
            replies = celery.control.ping(timeout=0.5) or []
            body["ping_replies"] = sorted(name for reply in replies for name in reply)
        except Exception as exc:  # noqa: BLE001 (reported in the body, the health answer stands)
            body["ping_error"] = type(exc).__name__
    return _check_answer(body)


@router.get("/health")
def health(client: RedisDep) -> JSONResponse:
    components = {"db": _db_status(), "redis": _redis_status(client)}
    components["workers"] = (
        _workers_status(client)
        if components["redis"]["status"] == "ok"
        else {"status": "unknown", "error": "redis down"}
    )
    statuses = {c["status"] for c in components.values()}
    if components["db"]["status"] == "down" and components["redis"]["status"] == "down":
        overall = "down"
    elif statuses == {"ok"}:
        overall = "ok"
    else:
        overall = "degraded"
    return JSONResponse({"status": overall, "components": components}, status_code=503 if overall == "down" else 200)
