"""Prometheus configuration, generated rules, their unit tests, the runbook and Alertmanager."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from .helpers import ALERTS_FILE, RECORDING_FILE, ROOT, load_generator, load_rules, recording_names, run
from .metric_contract import CONTRACT_NAMES
from .promql import unknown_names

PROM_DIR = ROOT / "prometheus"
CONFIG_FILE = PROM_DIR / "prometheus.yml"
UNIT_TESTS = PROM_DIR / "tests" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
SEVERITIES = {"warning", "critical"}
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")  # level:metric:operation


def alerts() -> list[dict]:
    return load_rules(ALERTS_FILE)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# --------------------------------------------------------------------------- promtool
def test_prometheus_config_is_valid(promtool, tmp_path):
    # promtool does not check that basic_auth.password_file exists (it checks only
    # authorization.credentials_file and TLS files), but a future version might: check a copy
    # of the directory whose password file really exists, so the rule_files glob still resolves.
    config_text = CONFIG_FILE.read_text()
    secret = "/run/secrets/flower_metrics_password"
    assert secret in config_text
    copy = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    password_file = tmp_path / "flower_metrics_password"
    password_file.write_text("not-a-real-password\n")
    (copy / "prometheus.yml").write_text(config_text.replace(secret, str(password_file)))

    result = run([promtool, "check", "config", "prometheus.yml"], cwd=copy)
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = len(list((PROM_DIR / "rules").glob("*.yml")))
    assert f"SUCCESS: {rule_files} rule files found" in result.stdout, result.stdout


def test_rules_are_valid(promtool):
    result = run([promtool, "check", "rules", str(RECORDING_FILE), str(ALERTS_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool):
    result = run([promtool, "test", "rules", str(UNIT_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_is_valid(amtool):
    result = run([amtool, "check-config", str(PROM_DIR / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- generated files
def test_generated_rules_are_up_to_date():
    generator = load_generator(PROM_DIR / "generate.py", "prometheus_generate")
    rendered = generator.render()
    assert set(rendered) == {ALERTS_FILE, RECORDING_FILE}
    for path, text in rendered.items():
        assert path.exists() and path.read_text() == text, (
            f"{path.relative_to(ROOT)} is out of date: run `python prometheus/generate.py` and commit it"
        )


# --------------------------------------------------------------------------- rule content
def test_every_alert_has_severity_and_annotations():
    assert alerts(), "no alerts found"
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url", "dashboard_url"):
            assert annotations.get(key, "").strip(), f"{name} lacks annotation {key}"
        assert annotations["runbook_url"].split("#")[0].endswith("/docs/runbook.md"), name


def test_every_runbook_url_has_a_heading():
    headings = {
        github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if re.match(r"^#{1,6} ", line)
    }
    for rule in alerts():
        anchor = rule["annotations"]["runbook_url"].partition("#")[2]
        assert anchor, f"{rule['alert']}: runbook_url has no #anchor"
        assert anchor in headings, f"{rule['alert']}: docs/runbook.md has no heading for #{anchor}"


def test_every_dashboard_url_points_at_a_dashboard():
    uids = {p.stem for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    for rule in alerts():
        uid = rule["annotations"]["dashboard_url"].rstrip("/").rpartition("/d/")[2]
        assert uid in uids, f"{rule['alert']}: no dashboard with uid {uid!r}"


def test_every_alert_is_tested_firing_and_not_firing():
    cases = [
        case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])
    ]
    for name in sorted({rule["alert"] for rule in alerts()}):
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no test where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no test where it does not fire"
        severities = {r["labels"]["severity"] for r in alerts() if r["alert"] == name}
        fired = {alert["exp_labels"].get("severity") for case in mine for alert in case.get("exp_alerts") or []}
        assert severities <= fired, f"{name}: severities {severities - fired} never tested firing"


def test_recording_rules_are_named_level_metric_operation():
    for name in recording_names():
        assert RECORD_NAME.match(name), name


def test_rules_use_only_contract_metrics():
    allowed = CONTRACT_NAMES | recording_names()
    for rule in load_rules(RECORDING_FILE) + alerts():
        unknown = unknown_names(rule["expr"], allowed)
        assert not unknown, (
            f"{rule.get('record') or rule.get('alert')} uses {sorted(unknown)} (not in tests/ops/metric_contract.py)"
        )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (task) (rate(a_total{job="x"}[5m])) / on () b', set()),
        ("nope_total > 1", {"nope_total"}),
        ('rate({__name__=~"librarian_tasks_(succeeded|failed)_total"}[5m])', set()),
        ('rate({__name__=~"librarian_nope_.*"}[5m])', {"__name__=~'librarian_nope_.*'"}),
    ],
)
def test_metric_name_check_is_not_vacuous(expr, expected):
    assert unknown_names(expr, CONTRACT_NAMES | {"a_total", "b"}) == expected


# --------------------------------------------------------------------------- scrape config
def test_scrape_jobs_match_the_alert_selectors():
    config = yaml.safe_load(CONFIG_FILE.read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"prometheus", "api", "worker", "flower", "redis"}
    assert config["rule_files"] == ["rules/*.yml"]
    assert config["global"]["scrape_interval"] == "15s"
    flower = next(job for job in config["scrape_configs"] if job["job_name"] == "flower")
    assert "password" not in flower["basic_auth"], "use password_file: Prometheus expands no env vars"
