"""The one settings object. Every knob is an UPPER_CASE environment variable (see .env.example)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import PrivateAttr, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.sentinel import SentinelURL, is_sentinel_url, mask_sentinel_url, parse_sentinel_url, sentinel_kwargs

PLACEHOLDER_SECRETS = {"changethis", "changeme", "password", "secret", "admin"}
# An owner name: what API_TOKENS, parts, batches, tasks and the agent brake call a user.
OWNER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,100}")
MIN_TOKEN_LENGTH = 16

QUEUES = ("default", "validation", "pipeline", "maintenance")


def mask_url(url: str | None) -> str | None:
    """Return the URL with any password replaced by '***' (for logs and API answers)."""
    if not url:
        return url
    if ";" in url:  # sentinel://…;sentinel://…: each address masked
        return mask_sentinel_url(url, mask_url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Settings(BaseSettings):
    # hide_input_in_errors: a refused configuration's traceback must not print the secrets it holds.
    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore", hide_input_in_errors=True)

    ENVIRONMENT: Literal["development", "test", "production"] = "development"
    PROJECT_NAME: str = "Librarian"
    VAR_DIR: Path = Path("var")

    # Broker / result backend. REDIS_URL unset means: use the embedded Valkey that `librarian up`
    # (or `librarian redis`) runs on EMBEDDED_REDIS_PORT.
    REDIS_URL: str | None = None
    EMBEDDED_REDIS_PORT: int = 6399
    CELERY_BROKER_URL: str | None = None
    CELERY_RESULT_BACKEND: str | None = None
    REDIS_SOCKET_TIMEOUT: float = 2.0
    # Sentinel (docs/reliability.md, "Broker HA"): REDIS_URL=sentinel://[:password@]host:port;
    # sentinel://host:port;… lists the sentinels (the password is the data nodes'); every Redis user
    # asks them for the current primary. REDIS_SENTINEL_MASTER is the monitored name (required in
    # that mode); REDIS_SENTINEL_PASSWORD the sentinels' own password, if they have one.
    REDIS_SENTINEL_MASTER: str = ""
    REDIS_SENTINEL_PASSWORD: SecretStr = SecretStr("")
    # Acknowledged means kept: the API's publish waits (WAIT) until this many replicas have the
    # message, at most REDIS_PUBLISH_WAIT_MS, and answers 503 when fewer did. 0: no wait (a 202 may
    # be lost if the primary dies before replicating it).
    REDIS_PUBLISH_WAIT_REPLICAS: int = 0
    REDIS_PUBLISH_WAIT_MS: int = 500

    DATABASE_URL: str | None = None
    STORAGE_DIR: Path | None = None
    # Where model files live (app/storage/): `file://PATH` or unset (STORAGE_DIR, else
    # VAR_DIR/storage), or `s3://BUCKET[/PREFIX]` on any S3-compatible store; S3_ENDPOINT_URL for one
    # that is not AWS (MinIO, SeaweedFS, Supabase Storage). Without S3_ACCESS_KEY_ID boto3's own
    # chain is used (AWS_* variables, an instance role). The secret is never logged.
    STORAGE_URL: str | None = None
    S3_ENDPOINT_URL: str | None = None
    S3_ACCESS_KEY_ID: str | None = None
    S3_SECRET_ACCESS_KEY: SecretStr = SecretStr("")
    S3_REGION: str = "us-east-1"

    # Time limits (seconds). A task may override them; the visibility timeout must exceed the
    # longest of them plus the longest countdown, or Redis redelivers running tasks.
    TASK_SOFT_TIME_LIMIT: int = 25 * 60
    TASK_TIME_LIMIT: int = 30 * 60
    MAX_TASK_COUNTDOWN: int = 60 * 60
    BROKER_VISIBILITY_TIMEOUT: int = 2 * 60 * 60
    RESULT_EXPIRES: int = 3600
    # How long the API remembers a task id it issued (app/core/task_registry.py): an id waiting in a
    # queue or held by a paused agent keeps answering its state, one whose result expired answers 410.
    ISSUED_TASK_TTL: int = 30 * 24 * 3600
    # A task message missing from every queue and from `unacked` (its worker was killed between
    # taking it and recording it) is republished once seen missing on two sweeps this far apart.
    # 0 turns the publish journal and its recovery off (plain kombu Redis transport).
    BROKER_RECOVERY_GRACE: float = 30.0
    # A worker whose heartbeat has been missing this long is dead: a live worker puts the messages
    # it held unacknowledged back on their queues at once, instead of after the visibility timeout.
    # A worker frozen (SIGSTOP, swapped out) for longer has its tasks run elsewhere as well: at least
    # once. 0 leaves dead workers' messages to the visibility timeout.
    WORKER_DEAD_AFTER: float = 10.0
    # Exactly one beat schedules (RedBeat's lock in Redis): a second `librarian beat` waits as a
    # standby and takes over this long after the leader stopped renewing (killed, host lost).
    BEAT_LOCK_TIMEOUT: int = 60
    # How often beat sends the canary task (librarian.maintenance.health_check) through the queues.
    CANARY_INTERVAL: float = 60.0
    SUBMIT_TIMEOUT: float = 2.0

    # Rulesets as code: every *.toml here is loaded (and checked) at start-up; DEFAULT_RULESET is
    # used when a request names none (docs/rulesets.md).
    RULESETS_DIR: Path = Path("rulesets")
    DEFAULT_RULESET: str = "default"

    MAX_FILE_SIZE_MB: int = 500
    MAX_ITEMS_PER_BATCH: int = 5000
    # Task messages carry ids, not files: a bigger body is refused by the worker unread.
    MAX_MESSAGE_BYTES: int = 1024 * 1024
    # Retries on transient errors (database, storage, broker), sized to outlast a short outage
    # (docs/runbook.md, "How long work survives an outage"); every countdown is capped at
    # MAX_TASK_COUNTDOWN. validate_file: 3 retries TASK_RETRY_DELAY seconds apart. A pipeline
    # stage: PIPELINE_MAX_RETRIES retries, the n-th after PIPELINE_RETRY_BACKOFF * 2**(n-1) seconds
    # capped at PIPELINE_RETRY_BACKOFF_MAX, each shortened by a random 0-50 % (jitter); then the
    # item is dead-lettered (`<stage>_failed`).
    TASK_RETRY_DELAY: int = 60
    PIPELINE_RETRY_BACKOFF: int = 150
    PIPELINE_RETRY_BACKOFF_MAX: int = 600
    PIPELINE_MAX_RETRIES: int = 3
    RATE_LIMIT_UPLOADS: str = "120/minute"
    RATE_LIMIT_BATCHES: str = "30/minute"
    # API authentication (README, "API"): comma-separated `owner:token` pairs. When set, every
    # /api/v1 call needs `Authorization: Bearer <token>` and acts as the token's owner. Empty: the
    # API is anonymous, refused in production unless ALLOW_ANONYMOUS=true. A secret: never logged.
    API_TOKENS: SecretStr = SecretStr("")
    ALLOW_ANONYMOUS: bool = False
    # The proxies whose X-Forwarded-For is believed (uvicorn's --forwarded-allow-ips): the client
    # address, which rate limits key on when a request has no token, is then the one they forward.
    FORWARDED_ALLOW_IPS: str = "127.0.0.1,::1"
    REPORT_CACHE_TTL: int = 300

    WORKER_CONCURRENCY: int = 2
    # Every model is read in a child process (app/validation/sandbox.py): SIGKILLed after this many
    # seconds, and refused more address space than the worker's plus this many MB (0: half of the
    # machine's memory shared among WORKER_CONCURRENCY slots, at least 512). A model over either
    # ends `rejected` with RESOURCE_LIMIT, not retried. Keep the timeout below TASK_SOFT_TIME_LIMIT:
    # past that, Celery's soft limit ends the task first and the part is `failed`.
    VALIDATION_TIMEOUT_S: float = 600.0
    VALIDATION_MAX_MEMORY_MB: int = 0
    # The largest report stored (len of its JSON), whatever a ruleset's max_report_bytes says.
    MAX_REPORT_BYTES: int = 5_000_000
    # A pool child over this size is replaced after its current task (Celery's
    # worker_max_memory_per_child): a backstop, since models are read in sandboxed children.
    WORKER_MAX_MEMORY_PER_CHILD_MB: int = 1024
    WORKER_QUEUES: str = ",".join(QUEUES)
    # A live worker with free pool slots that took nothing for this long while a message waited
    # longer than that in one of its queues is reported `stalled` by /health-check/celery.
    WORKER_STALL_SECONDS: float = 120.0
    WORKER_METRICS_PORT: int = 9808
    WORKER_METRICS_HOST: str = "127.0.0.1"
    API_HOST: str = "127.0.0.1"
    API_PORT: int = 8000
    FLOWER_HOST: str = "127.0.0.1"
    FLOWER_PORT: int = 5555
    FLOWER_USER: str = "librarian"
    FLOWER_PASSWORD: str = "changethis"
    # The web console's System page links to these when set (docs/console.md); nothing is fetched.
    FLOWER_URL: str = ""
    GRAFANA_URL: str = ""
    PROMETHEUS_URL: str = ""

    SENTRY_DSN: str = ""
    SENTRY_TRACES_SAMPLE_RATE: float = 0.0
    RELEASE: str = "librarian@0.1.0"

    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: Literal["json", "console"] = "json"
    METRICS_TOKEN: str = ""
    # The worker's and the API's /metrics: "fast" reads prometheus_client's multiprocess files itself
    # (app/observability/metrics_files.py); "stock" is prometheus_client's own MultiProcessCollector,
    # ~0.6 s CPU per scrape at 50 task names against ~11 ms (docs/performance.md): the way back if an
    # upgrade breaks the fast path.
    METRICS_EXPOSITION: Literal["fast", "stock"] = "fast"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def redis_url(self) -> str:
        return self.REDIS_URL or f"redis://127.0.0.1:{self.EMBEDDED_REDIS_PORT}/0"

    @property
    def uses_embedded_redis(self) -> bool:
        return self.REDIS_URL is None

    @property
    def redis_sentinel(self) -> SentinelURL | None:
        """The sentinels REDIS_URL lists, or None when it names one Redis server."""
        return parse_sentinel_url(self.redis_url) if is_sentinel_url(self.redis_url) else None

    @property
    def redis_sentinel_kwargs(self) -> dict[str, Any]:
        """How every client talks to the sentinels themselves (their password, our socket timeout)."""
        return sentinel_kwargs(self.REDIS_SENTINEL_PASSWORD.get_secret_value(), self.REDIS_SOCKET_TIMEOUT)

    @property
    def broker_url(self) -> str:
        return self.CELERY_BROKER_URL or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.CELERY_RESULT_BACKEND or self.redis_url

    @property
    def database_url(self) -> str:
        url = self.DATABASE_URL or f"sqlite:///{(self.VAR_DIR / 'librarian.db').resolve()}"
        # A bare postgresql:// would make SQLAlchemy load psycopg2, which is not installed: the
        # `postgres` extra is psycopg 3, whose dialect is postgresql+psycopg.
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url

    @property
    def storage_dir(self) -> Path:
        """The local store's root (STORAGE_URL=file://PATH, else STORAGE_DIR, else VAR_DIR/storage)."""
        if self.STORAGE_URL and self.STORAGE_URL.startswith("file://"):
            return Path(self.STORAGE_URL.removeprefix("file://")).resolve()
        return (self.STORAGE_DIR or self.VAR_DIR / "storage").resolve()

    @property
    def storage_tmp_dir(self) -> Path:
        """Where workers materialise stored files for reading; swept at worker start."""
        return (self.VAR_DIR / "tmp" / "storage").resolve()

    @property
    def s3_location(self) -> tuple[str, str] | None:
        """(bucket, key prefix ending in '/' or empty) of STORAGE_URL=s3://…, else None."""
        if not (self.STORAGE_URL or "").startswith("s3://"):
            return None
        parts = urlsplit(self.STORAGE_URL or "")
        prefix = parts.path.strip("/")
        return parts.netloc, f"{prefix}/" if prefix else ""

    def _check_storage_url(self) -> None:
        url = self.STORAGE_URL
        if url is None:
            return
        if not url.startswith(("file://", "s3://")):
            raise ValueError("STORAGE_URL must be file://PATH or s3://BUCKET[/PREFIX]")
        if url.startswith("s3://"):
            parts = urlsplit(url)
            if "@" in parts.netloc or parts.query or parts.fragment:
                raise ValueError(
                    "STORAGE_URL holds no credentials or options: use S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY"
                )
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parts.netloc):
                raise ValueError("STORAGE_URL=s3://BUCKET[/PREFIX]: the bucket name is not a valid S3 bucket name")
        secret = self.S3_SECRET_ACCESS_KEY.get_secret_value()
        if bool(self.S3_ACCESS_KEY_ID) != bool(secret):
            raise ValueError("set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither (boto3's own chain)")
        if secret:
            self._check_secret("S3_SECRET_ACCESS_KEY", secret)

    @property
    def max_file_size_bytes(self) -> int:
        return self.MAX_FILE_SIZE_MB * 1024 * 1024

    @property
    def validation_max_memory_mb(self) -> int:
        if self.VALIDATION_MAX_MEMORY_MB > 0:
            return self.VALIDATION_MAX_MEMORY_MB
        try:
            total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
        except (ValueError, OSError):
            return 2048
        return max(512, total_mb // 2 // max(1, self.WORKER_CONCURRENCY))

    @property
    def validation_limits(self) -> tuple[int, float]:
        """(memory MB, timeout s) for app.validation.sandbox.Limits."""
        return self.validation_max_memory_mb, self.VALIDATION_TIMEOUT_S

    @property
    def worker_queues(self) -> list[str]:
        return [q.strip() for q in self.WORKER_QUEUES.split(",") if q.strip()]

    @property
    def flower_password_is_placeholder(self) -> bool:
        return self.FLOWER_PASSWORD.lower() in PLACEHOLDER_SECRETS

    _api_tokens: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @property
    def api_tokens(self) -> tuple[tuple[str, str], ...]:
        """(token, owner) pairs from API_TOKENS; empty when the API is anonymous."""
        return self._api_tokens

    def _parse_api_tokens(self) -> tuple[tuple[str, str], ...]:
        """API_TOKENS as (token, owner) pairs. Errors name the entry by position, never its token."""
        pairs: list[tuple[str, str]] = []
        entries = [e.strip() for e in self.API_TOKENS.get_secret_value().split(",") if e.strip()]
        for n, entry in enumerate(entries, start=1):
            owner, _, token = (part.strip() for part in entry.partition(":"))
            where = f"API_TOKENS entry {n}"
            if not OWNER_NAME.fullmatch(owner) or not token:
                raise ValueError(f"{where} is not owner:token (owner: 1-100 of A-Z a-z 0-9 _ . @ -)")
            if not (token.isascii() and token.isprintable()) or " " in token:
                raise ValueError(f"{where} ({owner}): the token must be printable ASCII without spaces")
            if any(token == known for known, _ in pairs):
                raise ValueError(f"{where} ({owner}): the same token is given to two entries")
            if self.ENVIRONMENT != "development":
                if token.lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"{where} ({owner}): the token is a placeholder, set a real secret")
                if len(token) < MIN_TOKEN_LENGTH:
                    raise ValueError(f"{where} ({owner}): the token is shorter than {MIN_TOKEN_LENGTH} characters")
            pairs.append((token, owner))
        return tuple(pairs)

    def _check_secret(self, name: str, value: str) -> None:
        # In development `librarian up` swaps a placeholder for a generated password (var/).
        if value.lower() in PLACEHOLDER_SECRETS and self.ENVIRONMENT != "development":
            raise ValueError(f'The value of {name} is "{value}", a placeholder: set a real secret.')

    @model_validator(mode="after")
    def _validate(self) -> Settings:
        self._check_secret("FLOWER_PASSWORD", self.FLOWER_PASSWORD)
        self._check_storage_url()
        self._api_tokens = self._parse_api_tokens()
        if self.ENVIRONMENT == "production" and not self._api_tokens and not self.ALLOW_ANONYMOUS:
            raise ValueError(
                "API_TOKENS is empty: production serves the API only with tokens (owner:token,...), "
                "or without any when ALLOW_ANONYMOUS=true says so"
            )
        if self.TASK_SOFT_TIME_LIMIT >= self.TASK_TIME_LIMIT:
            raise ValueError("TASK_SOFT_TIME_LIMIT must be lower than TASK_TIME_LIMIT")
        if self.ISSUED_TASK_TTL <= self.RESULT_EXPIRES:
            raise ValueError("ISSUED_TASK_TTL must be longer than RESULT_EXPIRES (an id outlives its result)")
        if not self.VALIDATION_TIMEOUT_S > 0:
            raise ValueError("VALIDATION_TIMEOUT_S must be > 0")
        if self.BEAT_LOCK_TIMEOUT < 2:
            raise ValueError("BEAT_LOCK_TIMEOUT must be at least 2 seconds (the leader renews it every second)")
        if is_sentinel_url(self.REDIS_URL):
            parse_sentinel_url(self.redis_url)  # refused here, at start-up, when malformed
            if not self.REDIS_SENTINEL_MASTER:
                raise ValueError("REDIS_URL lists sentinels: set REDIS_SENTINEL_MASTER to the monitored name")
        if self.REDIS_PUBLISH_WAIT_REPLICAS < 0 or self.REDIS_PUBLISH_WAIT_MS < 1:
            raise ValueError("REDIS_PUBLISH_WAIT_REPLICAS must be >= 0 and REDIS_PUBLISH_WAIT_MS >= 1")
        if 0 < self.WORKER_DEAD_AFTER < 5:
            raise ValueError(
                "WORKER_DEAD_AFTER must be 0 (off) or at least 5 seconds: heartbeats are 2 s apart, "
                "and a shorter limit takes a busy worker for a dead one"
            )
        return self


settings = Settings()
