"""The metric contract: every series the dashboards and rules may use, in ONE place.

The ops tests check that no dashboard or rule uses a name outside it; app-side tests check that
the API and the worker really export the ``source="librarian"`` part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

QUEUES = ("default", "validation", "pipeline", "maintenance")
RUNTIME_OUTCOMES = ("success", "failure", "retry", "revoked")
HTTP_STATUS_GROUPS = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Models (app/observability/metrics.py; tests/observability/test_model_metrics.py checks them).
PART_OUTCOMES = ("validated", "rejected", "failed")
SEVERITIES = ("error", "warning", "info")
SIZE_CLASSES = ("lt_1mb", "1mb_10mb", "10mb_100mb", "ge_100mb")
UNREADABLE_REASONS = ("missing", "not_a_file", "permission", "empty", "not_3dm", "bad_header", "truncated", "corrupt")


@dataclass(frozen=True)
class Metric:
    name: str  # as exposed: counters with _total, histograms without _bucket/_sum/_count
    type: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    source: str  # librarian (our code) | instrumentator | redis_exporter | prometheus
    jobs: tuple[str, ...] = ()  # scrape jobs that expose it

    @property
    def sample_names(self) -> tuple[str, ...]:
        if self.type == "histogram":
            return tuple(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        return (self.name,)


TASK = ("task", "queue")
WORKER, API, BOTH = ("worker",), ("api",), ("api", "worker")

METRICS: tuple[Metric, ...] = (
    # Celery task lifecycle (signals in the worker; "sent" on the publishing side).
    Metric("librarian_tasks_sent_total", "counter", TASK, "librarian", BOTH),
    Metric("librarian_tasks_received_total", "counter", TASK, "librarian", WORKER),
    Metric("librarian_tasks_started_total", "counter", TASK, "librarian", WORKER),
    Metric("librarian_tasks_succeeded_total", "counter", TASK, "librarian", WORKER),
    Metric("librarian_tasks_retried_total", "counter", TASK, "librarian", WORKER),
    Metric("librarian_tasks_revoked_total", "counter", TASK, "librarian", WORKER),
    # failed: created at 0 per known task so rate() sees the first failure; exceptions: the breakdown.
    Metric("librarian_tasks_failed_total", "counter", TASK, "librarian", WORKER),
    Metric("librarian_task_exceptions_total", "counter", (*TASK, "exception"), "librarian", WORKER),
    Metric("librarian_tasks_rejected_total", "counter", ("reason",), "librarian", WORKER),
    Metric("librarian_tasks_unknown_total", "counter", (), "librarian", WORKER),
    Metric("librarian_messages_recovered_total", "counter", ("reason",), "librarian", WORKER),
    Metric("librarian_task_runtime_seconds", "histogram", (*TASK, "outcome"), "librarian", WORKER),
    Metric("librarian_task_queue_wait_seconds", "histogram", TASK, "librarian", WORKER),
    Metric("librarian_tasks_active", "gauge", (), "librarian", WORKER),
    Metric("librarian_queue_depth", "gauge", ("queue",), "librarian", BOTH),
    Metric("librarian_workers_alive", "gauge", (), "librarian", API),
    # Pipeline.
    Metric("librarian_pipeline_items_total", "counter", ("stage", "status"), "librarian", WORKER),
    Metric("librarian_pipeline_dead_letter_total", "counter", ("stage",), "librarian", WORKER),
    # Models: once per part validate_file finished (app/observability/model_metrics.py).
    Metric("librarian_parts_finished_total", "counter", ("outcome", "ruleset"), "librarian", WORKER),
    Metric("librarian_findings_total", "counter", ("code", "severity", "ruleset"), "librarian", WORKER),
    Metric("librarian_validation_duration_seconds", "histogram", ("size_class",), "librarian", WORKER),
    Metric("librarian_model_size_bytes", "histogram", (), "librarian", WORKER),
    Metric("librarian_model_objects", "histogram", (), "librarian", WORKER),
    Metric("librarian_models_unreadable_total", "counter", ("reason_code",), "librarian", WORKER),
    Metric("librarian_check_errors_total", "counter", ("check", "object_type"), "librarian", WORKER),
    # API HTTP, from prometheus-fastapi-instrumentator with namespace "librarian".
    Metric("librarian_http_requests_total", "counter", ("handler", "method", "status"), "instrumentator", API),
    Metric("librarian_http_request_duration_seconds", "histogram", ("handler", "method"), "instrumentator", API),
    # oliver006/redis_exporter.
    Metric("redis_up", "gauge", (), "redis_exporter", ("redis",)),
    Metric("redis_memory_used_bytes", "gauge", (), "redis_exporter", ("redis",)),
    Metric("redis_memory_max_bytes", "gauge", (), "redis_exporter", ("redis",)),
    Metric("redis_connected_clients", "gauge", (), "redis_exporter", ("redis",)),
    Metric("redis_commands_processed_total", "counter", (), "redis_exporter", ("redis",)),
    Metric("redis_db_keys", "gauge", ("db",), "redis_exporter", ("redis",)),
    # Prometheus itself, for every job.
    Metric("up", "gauge", ("job", "instance"), "prometheus", ("prometheus", "api", "worker", "flower", "redis")),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}

LIBRARIAN_METRICS: frozenset[str] = frozenset(m.name for m in METRICS if m.source == "librarian")
"""What the app itself must export (app-side tests assert this)."""

CONTRACT_NAMES: frozenset[str] = frozenset(name for m in METRICS for name in m.sample_names)
"""Every sample name a query may select (histograms expanded to _bucket/_sum/_count)."""
