"""`librarian up`: the whole stack on the embedded defaults, supervised, with its URLs printed."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from app.cli.supervisor import Child, Supervisor
from app.core.config import mask_url, settings

LOCK_FILE = "up.lock"  # in VAR_DIR: flock()ed by the supervisor for its whole life; says who holds it


class StackBusy(Exception):
    """Another stack holds this VAR_DIR, or a port this stack needs is taken: nothing was started."""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli.main", *args]


def dev_flower_password() -> str:
    """In development, a placeholder FLOWER_PASSWORD is replaced by one generated once into var/."""
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
        f"  Console         {api}/ui/",
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


def stack_urls(with_flower: bool) -> dict[str, str]:
    api = f"http://{settings.API_HOST}:{settings.API_PORT}"
    urls = {"api": api, "console": f"{api}/ui/", "docs": f"{api}/docs", "health": f"{api}/health"}
    if with_flower:
        urls["flower"] = f"http://{settings.FLOWER_HOST}:{settings.FLOWER_PORT}"
    return urls


def hold_stack_lock(var_dir: Path, urls: dict[str, str]) -> int:
    """Take VAR_DIR's lock (kept until the returned fd is closed, or this process dies) and write
    our pid and URLs into it; raise StackBusy naming the holder's when another stack has it."""
    fd = os.open(var_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(os.pread(fd, 64 * 1024, 0) or b"{}")
        except ValueError:
            holder = {}
        os.close(fd)
        where = ", ".join(f"{name} {url}" for name, url in holder.get("urls", {}).items() if name != "health")
        raise StackBusy(
            f"another `librarian up` already runs on {var_dir.resolve()}: pid {holder.get('pid', '?')}"
            + (f" ({where})" if where else "")
            + ". Use that stack, stop it (Ctrl-C in its terminal, or "
            f"kill -INT {holder.get('pid', '<pid>')}), or give this one its own VAR_DIR and ports."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "urls": urls}).encode(), 0)
    return fd


def _listening_pids(port: int) -> list[int]:
    """Pids with a TCP socket listening on `port` (Linux /proc; only the processes we may inspect)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd") if inodes else ():
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
        except OSError:
            continue
    return sorted(pids)


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return f"pid {pid} ({' '.join(a.decode(errors='replace') for a in argv if a)[:120]})"
    except OSError:
        return f"pid {pid}"


def check_ports_free(with_flower: bool) -> None:
    """Raise StackBusy naming each port this stack would bind that is taken, and who has it."""
    wanted = [
        ("API", "API_PORT", settings.API_HOST, settings.API_PORT),
        ("worker metrics", "WORKER_METRICS_PORT", settings.WORKER_METRICS_HOST, settings.WORKER_METRICS_PORT),
    ]
    if with_flower:
        wanted.append(("Flower", "FLOWER_PORT", settings.FLOWER_HOST, settings.FLOWER_PORT))
    if settings.uses_embedded_redis:
        wanted.append(("embedded Valkey", "EMBEDDED_REDIS_PORT", "127.0.0.1", settings.EMBEDDED_REDIS_PORT))
    busy = []
    for what, variable, host, port in wanted:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no owner
            try:
                sock.bind(address)
                continue
            except OSError:
                pass
        pids = _listening_pids(port)
        owner = f" by {_describe(pids[0])}" if pids else ""
        busy.append(f"port {port} ({what}, {variable}) on {host} is in use{owner}")
    if busy:
        raise StackBusy(
            "; ".join(busy) + ". Another Librarian stack or another program has it: stop it, "
            "or choose free ports with the variables named."
        )


def run_stack(*, with_flower: bool = True, with_beat: bool = True) -> int:
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    try:  # one stack per VAR_DIR and per port set; a second one starts nothing
        lock = hold_stack_lock(settings.VAR_DIR, stack_urls(with_flower))
        try:
            check_ports_free(with_flower)
        except StackBusy:
            os.close(lock)
            raise
    except StackBusy as exc:
        print(f"librarian up: not starting: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        return _supervise(with_flower, with_beat)
    finally:
        os.ftruncate(lock, 0)
        os.close(lock)


def _supervise(with_flower: bool, with_beat: bool) -> int:
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
    # The schema first, once, before the processes that use it (they upgrade too, finding nothing to do).
    if subprocess.run(_cli("migrate", "--log"), env=env, check=False).returncode != 0:
        print("librarian up: not starting: `librarian migrate` failed (above)", file=sys.stderr, flush=True)
        return 1
    return supervisor.run()
