"""A tiny process supervisor for `librarian up`: start children, restart the ones that die, stop all.

Why our own: supervisord needs a config file, a daemon and a control socket, and honcho/foreman
do not restart a crashed child. This is ~100 lines over subprocess, for the embedded dev stack only;
production uses systemd units or compose restart policies (see ops/).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger("librarian.supervisor")


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    stop_timeout: float = 30.0

    def start(self, pid_dir: Path) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        (pid_dir / f"{self.name}.pid").write_text(str(self.process.pid))
        log.info("process started", process=self.name, pid=self.process.pid, restarts=self.restarts)


@dataclass
class Supervisor:
    pid_dir: Path
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def add(self, child: Child) -> None:
        self.children.append(child)

    def _request_stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        for child in self.children:
            child.start(self.pid_dir)
        try:
            while not self.stopping:
                self._reap_and_restart()
                time.sleep(0.5)
        finally:
            self.stop_all()
            log.info("all stopped", processes=len(self.children))
        return 0

    def _reap_and_restart(self) -> None:
        for child in self.children:
            code = None if child.process is None else child.process.poll()
            if child.process is None or code is None:
                continue
            # Back off when a child keeps dying right after start (bad config): 1 s, 2 s ... 30 s.
            quick = time.monotonic() - child.started_at < 10
            delay = min(30.0, 2.0 ** min(child.restarts, 5)) if quick else 0.5
            log.warning("process exited, restarting", process=child.name, code=code, delay_s=delay)
            # sweep what the dead leader left in its group (e.g. orphaned pool children)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            time.sleep(delay)
            child.restarts += 1
            child.start(self.pid_dir)

    def stop_all(self) -> None:
        # Reverse order: flower, beat, worker, api stop before the broker they talk to.
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            log.info("stopping process", process=child.name, pid=process.pid)
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=child.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("process did not stop in time, killing", process=child.name)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
            (self.pid_dir / f"{child.name}.pid").unlink(missing_ok=True)
