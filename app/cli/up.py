"""`librarian up`: the whole stack on the embedded defaults, supervised, with its URLs printed."""

from __future__ import annotations

import os
import sys

from app.cli.supervisor import Child, Supervisor
from app.core.config import mask_url, settings


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli.main", *args]


def dev_flower_password() -> str:
    """In development, a placeholder FLOWER_PASSWORD is replaced by one generated once into var/."""
    import secrets

    path = settings.VAR_DIR / "flower-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def banner(with_flower: bool, flower_password_hint: str) -> str:
    api = f"http://{settings.API_HOST}:{settings.API_PORT}"
    lines = [
        "",
        "Librarian is starting (Ctrl-C stops everything):",
        f"  API docs        {api}/docs",
        f"  Health          {api}/health",
        f"  API metrics     {api}/metrics",
        f"  Worker metrics  http://127.0.0.1:{settings.WORKER_METRICS_PORT}/metrics",
        f"  Broker          {mask_url(settings.redis_url)}"
        + ("  (embedded Valkey, data in var/valkey)" if settings.uses_embedded_redis else ""),
        f"  Database        {mask_url(settings.database_url)}",
    ]
    if with_flower:
        lines.append(
            f"  Flower          http://{settings.FLOWER_HOST}:{settings.FLOWER_PORT}"
            f"  (user {settings.FLOWER_USER!r}, {flower_password_hint})"
        )
    return "\n".join(lines) + "\n"


def run_stack(*, with_flower: bool = True, with_beat: bool = True) -> int:
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    hint = "password from FLOWER_PASSWORD"
    if with_flower and settings.flower_password_is_placeholder and settings.ENVIRONMENT == "development":
        env["FLOWER_PASSWORD"] = dev_flower_password()
        hint = f"password in {settings.VAR_DIR / 'flower-password'}"
    supervisor = Supervisor(pid_dir=settings.VAR_DIR / "run")
    if settings.uses_embedded_redis:
        supervisor.add(Child("redis", _cli("redis"), env=env, stop_timeout=10))
    supervisor.add(Child("api", _cli("api"), env=env))
    supervisor.add(Child("worker", _cli("worker"), env=env, stop_timeout=60))
    if with_beat:
        supervisor.add(Child("beat", _cli("beat"), env=env))
    if with_flower:
        supervisor.add(Child("flower", _cli("flower"), env=env))
    print(banner(with_flower, hint), flush=True)
    return supervisor.run()
