"""Grafana: generated dashboards, their queries against the metric contract, provisioning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from .helpers import ROOT, load_generator, recording_names, run
from .metric_contract import CONTRACT_NAMES
from .promql import unknown_names, variable_query_names

GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCE_UID = "librarian-prometheus"
EXPECTED_UIDS = {
    "librarian-tasks",
    "librarian-workers-queues",
    "librarian-api",
    "librarian-redis",
    "librarian-model-quality",
}
# Grafana's built-in variables, replaced so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def dashboards() -> dict[Path, dict]:
    return {path: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def targets():
    for path, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name} / {panel['title']} / {target.get('refId')}", panel, target


def test_dashboards_have_the_stable_uids():
    found = {path: dashboard["uid"] for path, dashboard in dashboards().items()}
    assert sorted(found.values()) == sorted(EXPECTED_UIDS)  # also: no duplicates
    for path, uid in found.items():
        assert path.stem == uid, f"{path.name} holds uid {uid}"


def test_generated_dashboards_are_up_to_date():
    generator = load_generator(GRAFANA / "generate.py", "grafana_generate")
    rendered = generator.render()
    assert set(rendered) == set(dashboards()), "run `python grafana/generate.py` (a dashboard was added or removed)"
    for path, text in rendered.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is out of date: run `python grafana/generate.py`"


def test_panels_are_well_formed():
    for path, dashboard in dashboards().items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            where = f"{path.name} / {panel['title']}"
            assert panel["datasource"]["uid"] == DATASOURCE_UID, where
            assert panel["targets"], f"{where}: no targets"
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{where}: wider than the dashboard"
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refIds"


def test_every_target_has_ref_id_expr_and_datasource():
    for where, _, target in targets():
        assert target.get("refId"), where
        assert target.get("expr", "").strip(), where
        assert target.get("datasource", {}).get("uid") == DATASOURCE_UID, where


def test_variables_use_the_datasource_and_contract_metrics():
    for path, dashboard in dashboards().items():
        for var in dashboard["templating"]["list"]:
            where = f"{path.name} / ${var['name']}"
            assert var["datasource"]["uid"] == DATASOURCE_UID, where
            names = variable_query_names(var["query"]["query"])
            assert names and names <= CONTRACT_NAMES, f"{where}: {sorted(names - CONTRACT_NAMES)}"


def test_queries_use_only_contract_metrics():
    allowed = CONTRACT_NAMES | recording_names()
    for where, _, target in targets():
        unknown = unknown_names(target["expr"], allowed)
        assert not unknown, f"{where} uses {sorted(unknown)} (not in tests/ops/metric_contract.py)"


def test_queries_are_valid_promql(promtool, tmp_path):
    # promtool parses every expression of a rule file: feed it each query as a recording rule.
    records = []
    for number, (where, _, target) in enumerate(targets()):
        expr = target["expr"]
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        expr = re.sub(r"\$\w+", ".*", expr)  # dashboard variables sit inside =~"..." matchers
        records.append({"record": f"dashboard_query_{number}", "expr": expr, "labels": {"where": where}})
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}]}))
    result = run([promtool, "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("uid", "needle"),
    [
        ("librarian-tasks", "topk(10, sum by (task) (increase(librarian_tasks_failed_total"),
        ("librarian-tasks", "topk(10, sum by (task, exception)"),
        ("librarian-tasks", "histogram_quantile(0.99, sum by (le) (rate(librarian_task_queue_wait_seconds_bucket"),
        ("librarian-workers-queues", "librarian_workers_alive"),
        ("librarian-workers-queues", "librarian_tasks_active"),
        ("librarian-api", 'status="5xx"'),
        ("librarian-api", "histogram_quantile(0.5, sum by (le) (rate(librarian_http_request_duration_seconds_bucket"),
        ("librarian-redis", "redis_memory_used_bytes"),
        ("librarian-redis", "redis_commands_processed_total"),
        ("librarian-model-quality", "3600 * sum by (outcome) (rate(librarian_parts_finished_total"),
        ("librarian-model-quality", 'outcome="rejected"}[1h]))'),
        ("librarian-model-quality", "topk(10, sum by (code, severity) (increase(librarian_findings_total"),
        ("librarian-model-quality", "sum by (size_class, le) (rate(librarian_validation_duration_seconds_bucket"),
        ("librarian-model-quality", "histogram_quantile(0.95, sum by (le) (rate(librarian_model_size_bytes_bucket"),
        ("librarian-model-quality", "histogram_quantile(0.95, sum by (le) (rate(librarian_model_objects_bucket"),
        ("librarian-model-quality", "sum by (reason_code) (increase(librarian_models_unreadable_total"),
        ("librarian-model-quality", 'unless librarian_check_errors_total{job="worker"} offset $__range'),
    ],
)
def test_dashboards_show_what_they_promise(uid, needle):
    dashboard = json.loads((DASHBOARD_DIR / f"{uid}.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert any(needle in expr for expr in exprs), f"{uid}: no query contains {needle!r}"


def test_provisioning_points_at_the_dashboards():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "librarian.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"

    overlay = yaml.safe_load((ROOT / "docker-compose.monitoring.yml").read_text())
    mounts = overlay["services"]["grafana"]["volumes"]
    assert any(m.split(":")[:2] == ["./grafana/dashboards", path] for m in mounts), mounts
    assert any(m.split(":")[:2] == ["./grafana/provisioning", "/etc/grafana/provisioning"] for m in mounts), mounts
