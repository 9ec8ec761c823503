"""Every Prometheus metric Librarian exports, in one place.

Names follow Prometheus rules: `librarian_` prefix, counters end in `_total`, seconds as the unit,
bounded labels only (task name, queue, outcome, exception class, ruleset, finding code; never ids,
file names or hostnames).
Under the prefork pool these live in prometheus_client's multiprocess mode: the worker CLI sets
PROMETHEUS_MULTIPROC_DIR (wiped at start) before this module is imported.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from app.core.config import QUEUES
from app.models import PIPELINE_STAGES

TASK_LABELS = ("task", "queue")
OUTCOMES = ("success", "failure", "retry", "revoked")

# Task runtimes range from milliseconds (health checks) to the 30 min hard limit.
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

TASKS_SENT = Counter("librarian_tasks_sent", "Tasks published to the broker", TASK_LABELS)
TASKS_RECEIVED = Counter("librarian_tasks_received", "Tasks a worker took from the broker", TASK_LABELS)
TASKS_STARTED = Counter("librarian_tasks_started", "Tasks that began executing", TASK_LABELS)
TASKS_SUCCEEDED = Counter("librarian_tasks_succeeded", "Tasks that finished successfully", TASK_LABELS)
# Failures per task (created at 0, so rate() sees the very first one) and, separately, their
# breakdown by exception class (those series can only appear with their first failure).
TASKS_FAILED = Counter("librarian_tasks_failed", "Tasks that ended in failure", TASK_LABELS)
TASK_EXCEPTIONS = Counter("librarian_task_exceptions", "Task failures by exception class", (*TASK_LABELS, "exception"))
TASKS_RETRIED = Counter("librarian_tasks_retried", "Task attempts that asked for a retry", TASK_LABELS)
TASKS_REVOKED = Counter("librarian_tasks_revoked", "Tasks revoked before or while running", TASK_LABELS)
TASKS_REJECTED = Counter("librarian_tasks_rejected", "Messages refused by the worker", ("reason",))
TASKS_UNKNOWN = Counter("librarian_tasks_unknown", "Messages naming a task the worker does not know")
MESSAGES_RECOVERED = Counter(
    "librarian_messages_recovered",
    "Task messages put back on their queue by Librarian: held by a worker found dead (worker_dead), by a live "
    "worker's broker connection that was lost, e.g. in a Sentinel failover (connection_lost), or taken by a worker "
    "killed before it recorded them (lost_in_transit)",
    ("reason",),
)
RECOVERY_REASONS = ("worker_dead", "connection_lost", "lost_in_transit")

TASK_RUNTIME = Histogram(
    "librarian_task_runtime_seconds",
    "Task run time, by outcome",
    (*TASK_LABELS, "outcome"),
    buckets=RUNTIME_BUCKETS,
)
TASK_QUEUE_WAIT = Histogram(
    "librarian_task_queue_wait_seconds",
    "Time from publish (or ETA/countdown due time) to start",
    TASK_LABELS,
    buckets=WAIT_BUCKETS,
)
TASKS_ACTIVE = Gauge("librarian_tasks_active", "Tasks executing now in this worker's pool", multiprocess_mode="livesum")

PIPELINE_ITEMS = Counter(
    "librarian_pipeline_items",
    "Pipeline stage runs that finished, by stage and status (ok|failed)",
    ("stage", "status"),
)
PIPELINE_DEAD_LETTER = Counter(
    "librarian_pipeline_dead_letter", "Items that ended in <stage>_failed after their retries", ("stage",)
)

REJECT_REASONS = ("content_disallowed", "invalid", "unknown_format", "decode_error", "oversize")

# The models themselves, once per part that validate_file finished (app/observability/model_metrics.py).
PART_OUTCOMES = ("validated", "rejected", "failed")
# UnreadableModelError.code (app/validation/errors.py); any other code is counted as "other".
UNREADABLE_REASONS = ("missing", "not_a_file", "permission", "empty", "not_3dm", "bad_header", "truncated", "corrupt")
# The model file's size: < 1 MB, < 10 MB, < 100 MB, >= 100 MB (1 MB = 10^6 bytes).
SIZE_CLASSES = ("lt_1mb", "1mb_10mb", "10mb_100mb", "ge_100mb")
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
SIZE_BUCKETS = (1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8, 1e9)
OBJECT_BUCKETS = (1, 3, 10, 30, 100, 300, 1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6)

PARTS_FINISHED = Counter(
    "librarian_parts_finished",
    "Parts validate_file finished, by final state (validated|rejected|failed: the task gave up) and ruleset",
    ("outcome", "ruleset"),
)
FINDINGS = Counter(
    "librarian_findings",
    "Findings in finished reports, every one counted (also those the per-code cap left out of the list)",
    ("code", "severity", "ruleset"),
)
VALIDATION_DURATION = Histogram(
    "librarian_validation_duration_seconds",
    "Wall time of one model's validation (sandbox included), by the file's size class",
    ("size_class",),
    buckets=DURATION_BUCKETS,
)
MODEL_SIZE = Histogram(
    "librarian_model_size_bytes",
    "Size of each model file validated or rejected (unreadable ones too)",
    buckets=SIZE_BUCKETS,
)
MODEL_OBJECTS = Histogram(
    "librarian_model_objects",
    "Objects in each model that could be read (block members included)",
    buckets=OBJECT_BUCKETS,
)
MODELS_UNREADABLE = Counter(
    "librarian_models_unreadable", "Files rejected as MODEL_UNREADABLE, by reason code", ("reason_code",)
)
CHECK_ERRORS = Counter(
    "librarian_check_errors",
    "Checks that raised on one object or table (CHECK_ERROR findings), by check and rhino3dm object type",
    ("check", "object_type"),
)


def queue_label(queue: str | None) -> str:
    """Bounded queue label: a known queue's name, else 'other'."""
    return queue if queue in QUEUES else "other"


def initialise_task_series(tasks: dict[str, str]) -> None:
    """Create the counters of known tasks at 0 so series exist before the first event."""
    for name, queue in tasks.items():
        labels = (name, queue_label(queue))
        for counter in (
            TASKS_SENT,
            TASKS_RECEIVED,
            TASKS_STARTED,
            TASKS_SUCCEEDED,
            TASKS_FAILED,
            TASKS_RETRIED,
            TASKS_REVOKED,
        ):
            counter.labels(*labels)
    for reason in REJECT_REASONS:
        TASKS_REJECTED.labels(reason)
    for reason in RECOVERY_REASONS:
        MESSAGES_RECOVERED.labels(reason)
    for stage in PIPELINE_STAGES:
        PIPELINE_DEAD_LETTER.labels(stage)
        for status in ("ok", "failed"):
            PIPELINE_ITEMS.labels(stage, status)


MODEL_LEVEL_CHECKS = ("settings", "layers", "block definitions", "block cycles", "document strings")


def initialise_model_series(rulesets: Iterable[str], codes: dict[str, str]) -> None:
    """Create the model series at 0: outcomes and findings (each code at its default severity) per
    known ruleset, unreadable reasons, size classes. `codes`: finding code -> default severity."""
    for ruleset in rulesets:
        for outcome in PART_OUTCOMES:
            PARTS_FINISHED.labels(outcome, ruleset)
        for code, severity in codes.items():
            FINDINGS.labels(code, severity, ruleset)
    for reason in UNREADABLE_REASONS:
        MODELS_UNREADABLE.labels(reason)
    for size_class in SIZE_CLASSES:
        VALIDATION_DURATION.labels(size_class)
    # The checks that read a whole table of the model (object type "model") are a known, small set:
    # at 0, so rate() and the alert see their first error. Per-object checks appear with it.
    for check in MODEL_LEVEL_CHECKS:
        CHECK_ERRORS.labels(check, "model")
