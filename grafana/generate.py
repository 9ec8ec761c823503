"""Write Librarian's Grafana dashboards (grafana/dashboards/*.json) from the tables below.

One dict per dashboard; a panel is one call of a small helper. The JSON is checked in (Grafana
provisions it from /var/lib/grafana/dashboards) and tests/ops fails when it is out of date.

    python grafana/generate.py           # rewrite the dashboards
    python grafana/generate.py --check   # exit 1 if a dashboard differs from what it would write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "librarian-prometheus"}  # provisioning/datasources
RATE = "$__rate_interval"
QUANTILES = ("0.5", "0.95", "0.99")


# ---------------------------------------------------------------------------------------------
# Helpers: a panel is a dict; the dashboard builder gives ids and positions.
# ---------------------------------------------------------------------------------------------
def panel(
    title,
    *queries,
    kind="timeseries",
    unit="short",
    width=12,
    height=8,
    description="",
    instant=False,
    stack=False,
    thresholds=None,
    decimals=None,
):
    """One panel. `queries` are (expr, legend) pairs; refIds are A, B, C... in order."""
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": expr,
            "legendFormat": legend,
            "range": not instant,
            "instant": instant,
        }
        for i, (expr, legend) in enumerate(queries)
    ]
    defaults = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in thresholds],
        }
    if kind == "timeseries":
        defaults["custom"] = {
            "fillOpacity": 10,
            "showPoints": "never",
            "lineWidth": 1,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "auto",
        }
    elif kind == "bargauge":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "basic",
            "showUnfilled": True,
        }
    elif kind == "gauge":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdMarkers": True,
        }
    else:
        raise ValueError(f"unknown panel kind {kind!r}")
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def variable(name, label, query, *, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,  # on time range change
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "hide": 0,
    }


def quantiles(metric, selector, by=""):
    """p50/p95/p99 of a histogram as (expr, legend) pairs."""
    group = f"{by}, le" if by else "le"
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{round(float(q) * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in QUANTILES
    ]


# Reusable selectors (Grafana variables in them).
TASKS = 'queue=~"$queue", task=~"$task"'
QUEUE = 'queue=~"$queue"'
HANDLER = 'job="api", handler=~"$handler"'
REDIS = 'job="redis", instance=~"$instance"'
PARTS = 'job="worker", ruleset=~"$ruleset"'  # the model-quality metrics with a ruleset label
WORKER = 'job="worker"'
EXCEPTIONS_IN_RANGE = f"increase(librarian_task_exceptions_total{{{TASKS}}}[$__range])"
# A (check, object type) series is born at its first error, which increase() cannot see: a series
# younger than the range counts whole (as in the alert LibrarianCheckErrors).
_CHECK_ERRORS = f"librarian_check_errors_total{{{WORKER}}}"
CHECK_ERRORS_IN_RANGE = (
    f"  ({_CHECK_ERRORS} unless {_CHECK_ERRORS} offset $__range)\nor\n  increase({_CHECK_ERRORS}[$__range])"
)


def rejection_rate(window):
    """Rejected / finished parts per ruleset over `window` (also the alert's ratio)."""
    rejected, finished = f'{PARTS}, outcome="rejected"', PARTS
    return "\n/\n".join(
        f"sum by (ruleset) (increase(librarian_parts_finished_total{{{selector}}}[{window}]))"
        for selector in (rejected, finished)
    )


RED_BELOW_ONE = [(None, "red"), (1, "green")]

# ---------------------------------------------------------------------------------------------
# The dashboards.
# ---------------------------------------------------------------------------------------------
DASHBOARDS = {
    "librarian-tasks": {
        "title": "Librarian / Tasks",
        "description": "Celery task throughput, failures, runtime and queue wait.",
        "variables": [
            variable("queue", "Queue", "label_values(librarian_tasks_started_total, queue)"),
            variable("task", "Task", 'label_values(librarian_tasks_started_total{queue=~"$queue"}, task)'),
        ],
        "panels": [
            panel(
                "Task events per second, by state",
                *[
                    (f"sum(rate(librarian_tasks_{state}_total{{{TASKS}}}[{RATE}]))", state)
                    for state in ("sent", "received", "started", "succeeded", "failed", "retried", "revoked")
                ],
                unit="ops",
                width=24,
                description="sent is counted where tasks are published (mostly the API); "
                "the other states by the workers.",
            ),
            panel(
                "Failure ratio by task",
                (
                    (
                        f"sum by (task) (rate(librarian_tasks_failed_total{{{TASKS}}}[{RATE}]))\n/\n"
                        f"(sum by (task) (rate(librarian_tasks_succeeded_total{{{TASKS}}}[{RATE}]))\n+\n"
                        f"sum by (task) (rate(librarian_tasks_failed_total{{{TASKS}}}[{RATE}])))"
                    ),
                    "{{task}}",
                ),
                unit="percentunit",
                description="failed / (succeeded + failed). Retries are not failures. "
                "Alert: LibrarianTaskFailureRateHigh.",
            ),
            panel(
                "Failures per second by exception",
                (f"sum by (exception) (rate(librarian_task_exceptions_total{{{TASKS}}}[{RATE}]))", "{{exception}}"),
                unit="ops",
                stack=True,
            ),
            panel(
                "Runtime p50 / p95 / p99",
                *quantiles("librarian_task_runtime_seconds", TASKS),
                unit="s",
                description="From task start to finish, all outcomes. Alert: LibrarianTaskRuntimeP95High.",
            ),
            panel("Runtime p95 by task", *quantiles("librarian_task_runtime_seconds", TASKS, by="task")[1:2], unit="s"),
            panel(
                "Queue wait p50 / p95 / p99",
                *quantiles("librarian_task_queue_wait_seconds", TASKS),
                unit="s",
                description="From publish to start (countdown/ETA included). Alert: LibrarianQueueWaitP95High.",
            ),
            panel(
                "Runtime by outcome (per second)",
                (f"sum by (outcome) (rate(librarian_task_runtime_seconds_count{{{TASKS}}}[{RATE}]))", "{{outcome}}"),
                unit="ops",
                stack=True,
            ),
            panel(
                "Top failing tasks (time range)",
                (f"topk(10, sum by (task) (increase(librarian_tasks_failed_total{{{TASKS}}}[$__range])))", "{{task}}"),
                kind="bargauge",
                instant=True,
                decimals=0,
            ),
            panel(
                "Top exceptions (time range)",
                (
                    f"topk(10, sum by (task, exception) ({EXCEPTIONS_IN_RANGE}))",
                    "{{task}}: {{exception}}",
                ),
                kind="bargauge",
                instant=True,
                decimals=0,
            ),
            panel(
                "Rejected, unknown and recovered messages per second",
                (f"sum by (reason) (rate(librarian_tasks_rejected_total[{RATE}]))", "rejected: {{reason}}"),
                (f"sum(rate(librarian_tasks_unknown_total[{RATE}]))", "unknown task"),
                (f"sum by (reason) (rate(librarian_messages_recovered_total[{RATE}]))", "recovered: {{reason}}"),
                unit="ops",
                description="Hostile or undecodable messages, task names no worker knows, and "
                "messages put back on their queue: held by a worker found dead (worker_dead; alert "
                "LibrarianWorkersDying), held by a live worker's lost broker connection (connection_lost), "
                "or taken by a worker killed before it recorded them (lost_in_transit).",
            ),
            panel(
                "Pipeline items per second by stage and status",
                (f"sum by (stage, status) (rate(librarian_pipeline_items_total[{RATE}]))", "{{stage}} {{status}}"),
                unit="ops",
            ),
            panel(
                "Dead-lettered pipeline items (time range)",
                ("sum by (stage) (increase(librarian_pipeline_dead_letter_total[$__range]))", "{{stage}}"),
                kind="bargauge",
                instant=True,
                decimals=0,
                description="Alert: LibrarianDeadLetterItems.",
                thresholds=[(None, "green"), (1, "red")],
            ),
        ],
    },
    "librarian-workers-queues": {
        "title": "Librarian / Workers and queues",
        "description": "Live workers, what they are doing and what waits for them.",
        "variables": [variable("queue", "Queue", "label_values(librarian_queue_depth, queue)")],
        "panels": [
            panel(
                "Live workers",
                ('max(librarian_workers_alive{job="api"})', "workers"),
                kind="stat",
                width=6,
                height=5,
                thresholds=RED_BELOW_ONE,
                description="Workers with a live heartbeat, as counted by the API. Alert: LibrarianNoLiveWorker.",
            ),
            panel(
                "Worker metrics endpoints up",
                ('sum(up{job="worker"})', "up"),
                kind="stat",
                width=6,
                height=5,
                thresholds=RED_BELOW_ONE,
            ),
            panel(
                "Active tasks", ('sum(librarian_tasks_active{job="worker"})', "active"), kind="stat", width=6, height=5
            ),
            panel(
                "Messages waiting",
                (f"sum(max by (queue) (librarian_queue_depth{{{QUEUE}}}))", "waiting"),
                kind="stat",
                width=6,
                height=5,
                thresholds=[(None, "green"), (100, "orange"), (1000, "red")],
            ),
            panel(
                "Queue depth per queue",
                (f"max by (queue) (librarian_queue_depth{{{QUEUE}}})", "{{queue}}"),
                description="API and workers both export it; max de-duplicates. Alert: LibrarianQueueBacklog.",
            ),
            panel(
                "Queue wait p95 per queue",
                *quantiles("librarian_task_queue_wait_seconds", QUEUE, by="queue")[1:2],
                unit="s",
            ),
            panel(
                "Live workers over time",
                ('max(librarian_workers_alive{job="api"})', "live workers"),
                ('sum(up{job="worker"})', "metrics endpoints up"),
            ),
            panel(
                "Active tasks per worker",
                ('sum by (instance) (librarian_tasks_active{job="worker"})', "{{instance}}"),
                stack=True,
            ),
            panel(
                "Started per second, by queue",
                (f"sum by (queue) (rate(librarian_tasks_started_total{{{QUEUE}}}[{RATE}]))", "{{queue}}"),
                unit="ops",
                stack=True,
            ),
            panel(
                "Published per second, by queue",
                (f"sum by (queue) (rate(librarian_tasks_sent_total{{{QUEUE}}}[{RATE}]))", "{{queue}}"),
                unit="ops",
                stack=True,
                description="When this stays above 'started', the queue grows.",
            ),
            panel(
                "Scrape targets",
                ('up{job=~"api|worker|flower|redis|prometheus"}', "{{job}} {{instance}}"),
                width=24,
                height=6,
                description="1 = Prometheus can scrape it. Alert: LibrarianTargetDown.",
            ),
        ],
    },
    "librarian-api": {
        "title": "Librarian / API",
        "description": "HTTP traffic, latency and errors of the FastAPI service.",
        "variables": [
            variable("handler", "Handler", 'label_values(librarian_http_requests_total{job="api"}, handler)')
        ],
        "panels": [
            panel(
                "Requests per second, by status",
                (f"sum by (status) (rate(librarian_http_requests_total{{{HANDLER}}}[{RATE}]))", "{{status}}"),
                unit="reqps",
                stack=True,
            ),
            panel(
                "Requests per second, by handler",
                (
                    f"sum by (method, handler) (rate(librarian_http_requests_total{{{HANDLER}}}[{RATE}]))",
                    "{{method}} {{handler}}",
                ),
                unit="reqps",
            ),
            panel("Latency p50 / p95 / p99", *quantiles("librarian_http_request_duration_seconds", HANDLER), unit="s"),
            panel(
                "Latency p95 by handler",
                *quantiles("librarian_http_request_duration_seconds", HANDLER, by="handler")[1:2],
                unit="s",
            ),
            panel(
                "5xx ratio",
                (
                    (
                        f'sum(rate(librarian_http_requests_total{{{HANDLER}, status="5xx"}}[{RATE}]))\n/\n'
                        f"sum(rate(librarian_http_requests_total{{{HANDLER}}}[{RATE}]))"
                    ),
                    "5xx",
                ),
                unit="percentunit",
                description="Alert: LibrarianApi5xxRateHigh (all handlers, 5m).",
            ),
            panel(
                "Tasks submitted per second, by task",
                (f'sum by (task) (rate(librarian_tasks_sent_total{{job="api"}}[{RATE}]))', "{{task}}"),
                unit="ops",
                stack=True,
            ),
        ],
    },
    "librarian-model-quality": {
        "title": "Librarian / Model quality",
        "description": "What the validation finds in the models: outcomes, rejection rates, finding codes, "
        "model sizes and the checks' own errors.",
        "variables": [variable("ruleset", "Ruleset", "label_values(librarian_parts_finished_total, ruleset)")],
        "panels": [
            panel(
                "Models finished per hour, by outcome",
                (f"3600 * sum by (outcome) (rate(librarian_parts_finished_total{{{PARTS}}}[{RATE}]))", "{{outcome}}"),
                stack=True,
                decimals=1,
                description="Parts whose validation ended, as a rate per hour: validated (passed the ruleset), "
                "rejected (failed it, or unreadable), failed (no verdict: the task gave up after its retries). "
                "Alert: LibrarianPartsFailing (failed > 1 % of finished over 30 min).",
            ),
            panel(
                "Rejection rate per ruleset: last hour and 24 h baseline",
                (rejection_rate("1h"), "{{ruleset}} 1h"),
                (rejection_rate("24h"), "{{ruleset}} 24h baseline"),
                unit="percentunit",
                description="rejected / finished parts per ruleset. Alert: LibrarianRejectionRateJump (the 1 h "
                "rate above 3 x the 24 h baseline, the baseline floored at 5 %, at least 20 parts in the hour).",
            ),
            panel(
                "Top 10 finding codes (time range)",
                (
                    f"topk(10, sum by (code, severity) (increase(librarian_findings_total{{{PARTS}}}[$__range])))",
                    "{{code}} ({{severity}})",
                ),
                kind="bargauge",
                instant=True,
                decimals=0,
                description="Findings reported over the time range, by code (docs/checks.md), all parts. "
                "A code that climbs here usually drives LibrarianRejectionRateJump.",
            ),
            panel(
                "Validation duration p50 / p95 by model size class",
                *quantiles("librarian_validation_duration_seconds", WORKER, by="size_class")[:2],
                unit="s",
                description="Time to validate one model, by file size class (lt_1mb, 1mb_10mb, 10mb_100mb, "
                "ge_100mb). No alert of its own; the whole task's p95 alerts as LibrarianTaskRuntimeP95High.",
            ),
            panel(
                "Model size p50 / p95",
                *quantiles("librarian_model_size_bytes", WORKER)[:2],
                unit="bytes",
                description="File size of the models validated (bucket estimates). A shift explains slower "
                "validations. No alert.",
            ),
            panel(
                "Model object count p50 / p95",
                *quantiles("librarian_model_objects", WORKER)[:2],
                description="Objects per model validated (bucket estimates). No alert.",
            ),
            panel(
                "Unreadable models by reason (time range)",
                (
                    f"sum by (reason_code) (increase(librarian_models_unreadable_total{{{WORKER}}}[$__range]))",
                    "{{reason_code}}",
                ),
                kind="bargauge",
                instant=True,
                decimals=0,
                description="Files that are not a usable .3dm model (rejected with MODEL_UNREADABLE), by "
                "reason_code: missing, not_a_file, permission, empty, not_3dm, bad_header, truncated, corrupt. "
                "They count as rejected in LibrarianRejectionRateJump.",
            ),
            panel(
                "Check errors by check and object type (time range)",
                (
                    f"topk(10, sum by (check, object_type) (\n{CHECK_ERRORS_IN_RANGE}\n))",
                    "{{check}} on {{object_type}}",
                ),
                kind="bargauge",
                instant=True,
                decimals=0,
                thresholds=[(None, "green"), (1, "red")],
                description="A check raised on an object (or a table: object type 'model') of a real model, "
                "CHECK_ERROR in its report: a gap in our checks, not a fault of the model. One Sentry event per "
                "(check, object type). A pair's series appears with its first error, so one younger than the "
                "range counts whole. Alert: LibrarianCheckErrors.",
            ),
        ],
    },
    "librarian-redis": {
        "title": "Librarian / Redis",
        "description": "The broker and result backend, via redis_exporter.",
        "variables": [variable("instance", "Instance", 'label_values(redis_up{job="redis"}, instance)')],
        "panels": [
            panel(
                "Redis up",
                (f"min(redis_up{{{REDIS}}})", "up"),
                kind="stat",
                width=6,
                height=5,
                thresholds=RED_BELOW_ONE,
                description="Alert: LibrarianRedisDown.",
            ),
            panel(
                "Memory used of maxmemory",
                (f"sum(redis_memory_used_bytes{{{REDIS}}}) / sum(redis_memory_max_bytes{{{REDIS}}} > 0)", "used"),
                kind="gauge",
                unit="percentunit",
                width=6,
                height=5,
                thresholds=[(None, "green"), (0.75, "orange"), (0.9, "red")],
                description="Empty when maxmemory is 0 (no limit). Alert: LibrarianRedisMemoryHigh.",
            ),
            panel(
                "Connected clients",
                (f"sum(redis_connected_clients{{{REDIS}}})", "clients"),
                kind="stat",
                width=6,
                height=5,
            ),
            panel("Keys", (f"sum(redis_db_keys{{{REDIS}}})", "keys"), kind="stat", width=6, height=5),
            panel(
                "Memory",
                (f"redis_memory_used_bytes{{{REDIS}}}", "used {{instance}}"),
                (f"redis_memory_max_bytes{{{REDIS}}}", "max {{instance}}"),
                unit="bytes",
            ),
            panel(
                "Commands per second",
                (f"rate(redis_commands_processed_total{{{REDIS}}}[{RATE}])", "{{instance}}"),
                unit="ops",
            ),
            panel("Connected clients over time", (f"redis_connected_clients{{{REDIS}}}", "{{instance}}")),
            panel("Keys per database", (f"sum by (db) (redis_db_keys{{{REDIS}}})", "{{db}}"), stack=True),
            panel(
                "Celery queue lengths",
                ("max by (queue) (librarian_queue_depth)", "{{queue}}"),
                width=24,
                description="The Redis lists behind the Celery queues, as the app reports them.",
            ),
        ],
    },
}


# ---------------------------------------------------------------------------------------------
def build(uid: str, spec: dict) -> dict:
    panels, x, y, row_height = [], 0, 0, 0
    for number, source in enumerate(spec["panels"], start=1):
        p = json.loads(json.dumps(source))  # a copy: helpers may share nested dicts
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        p["id"] = number
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x, row_height = x + w, max(row_height, h)
        panels.append(p)
    return {
        "uid": uid,
        "title": spec["title"],
        "description": spec["description"],
        "tags": ["librarian"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "links": [
            {
                "title": "Librarian dashboards",
                "type": "dashboards",
                "tags": ["librarian"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": spec["variables"]},
        "panels": panels,
    }


def render() -> dict[Path, str]:
    return {OUT_DIR / f"{uid}.json": json.dumps(build(uid, spec), indent=2) + "\n" for uid, spec in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    rendered = render()
    stale = [p for p, text in rendered.items() if not p.exists() or p.read_text() != text]
    stale += [p for p in OUT_DIR.glob("*.json") if p not in rendered]  # a dashboard was removed
    for path in stale:
        if args.check:
            print(f"{path.relative_to(HERE.parent)}: out of date", file=sys.stderr)
        elif path in rendered:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered[path])
            print(f"{path.relative_to(HERE.parent)}: written", file=sys.stderr)
        else:
            path.unlink()
            print(f"{path.relative_to(HERE.parent)}: removed", file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
