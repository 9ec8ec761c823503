"""The real Prometheus scrapes a real stack: every dashboard query, rule and alert has data.

A Prometheus server (Debian's `prometheus`) scrapes this test's own API, worker, Flower and a
redis_exporter (Debian's `prometheus-redis-exporter`) in front of the test broker every second,
with the project's five scrape jobs (names, auth, paths from prometheus/prometheus.yml) and its
real rule files. A workload that succeeds, fails, retries, answers 2xx/4xx/5xx and uploads models
(one valid, one rejected for its names, one unreadable) runs through the stack; then every `expr`
of every Grafana panel, every variable query, every recording rule and every series an alert reads
must return finite data through Prometheus' HTTP API — nothing is excused. Finally the worker is
SIGKILLed and the LibrarianNoLiveWorker expression must turn true.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import yaml

from tests.fixtures.models_3dm import bad_names, corrupt_bytes, valid_part
from tests.utils.processes import ManagedProcess, free_port, wait_until

from .helpers import ROOT, load_rules
from .promql import selected_names

pytestmark = pytest.mark.integration

DB = 6  # a Redis database of its own (1-4 other tests, 5 the Flower test, 7-15 reliability)
PROM_CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "prometheus" / "rules"
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
RATE_WINDOW = "1m"  # what $__rate_interval becomes (Grafana: max(4 x scrape interval, step))


# --------------------------------------------------------------------------- helpers
def vector_selectors(expr: str) -> set[str]:
    """The vector selectors of an expression, with their label matchers: `up{job="worker"}`."""
    names, _ = selected_names(expr)
    found = set()
    for name in names:
        for match in re.finditer(rf"(?<![\w:]){re.escape(name)}(?![\w:])\s*(\{{[^{{}}]*\}})?", expr):
            found.add(name + (match.group(1) or ""))
    found |= set(re.findall(r"\{[^{}]*__name__\s*=~[^{}]*\}", expr))
    return found


class Prom:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=10)

    def query(self, expr: str) -> list[dict]:
        answer = self.http.post("/api/v1/query", data={"query": expr})
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", f"{expr}\n-> {answer.text}"
        assert body["data"]["resultType"] == "vector", body
        return body["data"]["result"]

    def finite(self, expr: str) -> list[dict]:
        """The series of `expr` with a finite value (NaN, as in 0/0, draws nothing in Grafana)."""
        return [s for s in self.query(expr) if math.isfinite(float(s["value"][1]))]

    def targets(self) -> list[dict]:
        return self.http.get("/api/v1/targets").json()["data"]["activeTargets"]

    def rules(self) -> list[dict]:
        return [r for g in self.http.get("/api/v1/rules").json()["data"]["groups"] for r in g["rules"]]

    def alerts(self) -> list[dict]:
        return self.http.get("/api/v1/alerts").json()["data"]["alerts"]


def hostport(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def write_config(directory: Path, stack, prom_port: int, exporter: str) -> tuple[Path, list[str]]:
    """The project's prometheus.yml with our targets, 1 s intervals and no Alertmanager."""
    project = yaml.safe_load(PROM_CONFIG.read_text())
    jobs = [job["job_name"] for job in project["scrape_configs"]]
    assert sorted(jobs) == ["api", "flower", "prometheus", "redis", "worker"], jobs
    targets = {
        "prometheus": f"127.0.0.1:{prom_port}",
        "api": hostport(stack.api_url),
        "worker": hostport(stack.worker.metrics_url),
        "flower": hostport(stack.flower_url),
        "redis": exporter,
    }
    password_file = directory / "flower_metrics_password"
    password_file.write_text(stack.flower_metrics_auth[1] + "\n")
    scrape_configs = []
    for source in project["scrape_configs"]:
        job = {k: v for k, v in source.items() if k not in ("static_configs", "dns_sd_configs")}
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if "basic_auth" in job:  # the compose secret, as a file of ours
            assert job["basic_auth"]["username"] == stack.flower_metrics_auth[0], job
            job["basic_auth"]["password_file"] = str(password_file)
        scrape_configs.append(job)
    shutil.copytree(RULES_DIR, directory / "rules")  # rule_files stays `rules/*.yml`, as in the project
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": project["rule_files"],
        "scrape_configs": scrape_configs,
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, [job["job_name"] for job in scrape_configs]


def dashboard_queries() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]:
    """([(dashboard uid, panel title, expr with variables substituted)],
    [(uid, variable, label, PromQL listing the variable's values)])."""
    panels, variables = [], []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uid = board["uid"]
        templating = board.get("templating", {}).get("list", [])
        range_match = re.fullmatch(r"now-(\d+[smhdw])", board.get("time", {}).get("from", "now-6h"))
        values = {"__rate_interval": RATE_WINDOW, "__range": range_match.group(1) if range_match else "6h"}
        for var in templating:
            assert var.get("includeAll") and var.get("allValue") == ".*", (uid, var["name"])
            values[var["name"]] = var["allValue"]  # "All", as Grafana sends it

        def substitute(expr: str, values: dict[str, str] = values) -> str:
            for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
            assert "$" not in expr, expr
            return expr

        for var in templating:
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
            assert match, (uid, var["name"], query)
            variables.append(
                (uid, var["name"], match.group(2), substitute(f"count by ({match.group(2)}) ({match.group(1)})"))
            )

        def walk(items: list[dict], uid: str = uid) -> None:
            for panel in items:
                walk(panel.get("panels", []))
                panels.extend(
                    (uid, panel["title"], substitute(target["expr"]))
                    for target in panel.get("targets", [])
                    if target.get("expr")
                )

        walk(board["panels"])
    return panels, variables


# --------------------------------------------------------------------------- workload
DEMO, FIVE_XX, STORAGE_FAILURES, TRANSIENT, HEALTH = 4, 2, 1, 1, 2  # per round
# Models uploaded per round, with the outcome each must end in: findings, a rejection, an unreadable file.
MODELS = {valid_part: "validated", bad_names: "rejected", corrupt_bytes: "rejected"}
FINISHED = {"validated", "rejected", "failed"}


def upload_models(api: httpx.Client, directory: Path) -> dict[str, tuple[str, str]]:
    """Upload every model of MODELS; {part id: (file name, expected outcome)}."""
    parts = {}
    for make, outcome in MODELS.items():
        path = make(directory)
        answer = api.post("/api/v1/parts", files={"file": (path.name, path.read_bytes())})
        assert answer.status_code == 202, answer.text
        parts[answer.json()["part_id"]] = (path.name, outcome)
    return parts


def run_workload(stack, round_: int, models_dir: Path) -> None:
    """Successes, failures (one after 3 retries), 2xx, 4xx and 5xx, and uploaded models validated or
    rejected; returns once all finished."""
    with httpx.Client(base_url=stack.api_url, timeout=15) as api:
        parts = upload_models(api, models_dir)
        demo_ids = []
        for i in range(DEMO):
            answer = api.post("/api/v1/tasks/test", params={"message": f"prom-{round_}-{i}", "steps": 1})
            assert answer.status_code == 202, answer.text
            demo_ids.append(answer.json()["task_id"])
        for _ in range(FIVE_XX):  # the 5xx ratio panel and recording rule need some
            # A connection each: uvicorn closes the connection after an unhandled error.
            answer = httpx.post(f"{stack.api_url}/api/v1/diagnostics/sentry-error", timeout=15)
            assert answer.status_code == 500, answer.text
        assert api.get(f"/api/v1/tasks/{uuid.uuid4()}").status_code == 404  # a 4xx too
        failing = [
            stack.producer.send_task("librarian.demo.read_storage", args=["../x"]) for _ in range(STORAGE_FAILURES)
        ]
        failing += [stack.producer.send_task("librarian.demo.always_transient") for _ in range(TRANSIENT)]
        healthy = [stack.producer.send_task("librarian.maintenance.health_check") for _ in range(HEALTH)]

        def demo_done() -> bool:
            return all(api.get(f"/api/v1/tasks/{i}").json()["status"] == "SUCCESS" for i in demo_ids)

        wait_until(demo_done, timeout=45, interval=0.3, message=f"demo tasks unfinished:\n{stack.worker.tail()}")

        def statuses() -> dict[str, str]:
            return {part_id: api.get(f"/api/v1/parts/{part_id}").json()["status"] for part_id in parts}

        wait_until(
            lambda: set(statuses().values()) <= FINISHED,
            timeout=60,
            interval=0.3,
            message=f"parts unfinished: {statuses()}\n{stack.worker.tail()}",
        )
        ended = {parts[part_id][0]: status for part_id, status in statuses().items()}
        assert ended == dict(parts.values()), ended
    for result in healthy:
        result.get(timeout=30)
    for result in failing:
        wait_until(
            lambda r=result: r.state == "FAILURE",
            timeout=30,
            interval=0.2,
            message=f"{result.id} never failed:\n{stack.worker.tail()}",
        )


def scraped(prom: Prom, rounds: int) -> bool:
    """Prometheus holds the outcome of `rounds` rounds of the workload."""
    wanted = {
        'sum(librarian_tasks_failed_total{job="worker"})': (STORAGE_FAILURES + TRANSIENT) * rounds,
        'sum(librarian_tasks_succeeded_total{job="worker"})': (DEMO + HEALTH) * rounds,
        'sum(librarian_http_requests_total{job="api", status="5xx"})': FIVE_XX * rounds,
        'sum(librarian_parts_finished_total{job="worker"})': len(MODELS) * rounds,
    }
    for query, minimum in wanted.items():
        result = prom.query(query)
        if not result or float(result[0]["value"][1]) < minimum:
            return False
    return True


# --------------------------------------------------------------------------- the test
@contextlib.contextmanager
def maxmemory_as_in_compose(url: str) -> Iterator[None]:
    """docker-compose.yml gives the broker a maxmemory (1gb); the test broker has none (0), which
    leaves 'Memory used of maxmemory' empty by design. Set it for the test, restore it after."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    old = client.config_get("maxmemory")["maxmemory"]
    if old == "0":  # never below what is used (an external test Redis may hold more)
        client.config_set("maxmemory", max(1 << 30, 4 * int(client.info("memory")["used_memory"])))
    try:
        yield
    finally:
        if old == "0":
            client.config_set("maxmemory", old)
        client.close()


def start_redis_exporter(binary: str, broker_url: str, log_dir: Path) -> tuple[ManagedProcess, str]:
    """redis_exporter in front of the broker (all databases), the password in its environment."""
    parts = urlsplit(broker_url)
    scheme = "rediss" if parts.scheme == "rediss" else "redis"
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if parts.password:
        env["REDIS_PASSWORD"] = unquote(parts.password)
    if parts.username:
        env["REDIS_USER"] = unquote(parts.username)
    exporter = ManagedProcess(
        f"redis-exporter-{port}",
        [
            binary,
            f"-redis.addr={scheme}://{parts.hostname}:{parts.port or 6379}",
            f"-web.listen-address=127.0.0.1:{port}",
            "-redis-only-metrics",
        ],
        env,
        log_dir,
    )
    return exporter, f"127.0.0.1:{port}"


def test_every_dashboard_query_rule_and_alert_has_data_in_a_real_prometheus(
    prometheus_server, redis_exporter, live_stack, tmp_path
):
    started_at = time.monotonic()
    stack = live_stack(DB)
    stack_ready = time.monotonic() - started_at
    exporter, exporter_address = start_redis_exporter(redis_exporter, stack.url, stack.log_dir)
    prom_port = free_port()
    config, jobs = write_config(tmp_path, stack, prom_port, exporter_address)
    prometheus = ManagedProcess(
        f"prometheus-{prom_port}",
        [
            prometheus_server,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            "--storage.tsdb.retention.time=1h",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        dict(os.environ),
        stack.log_dir,
    )
    prom = Prom(f"http://127.0.0.1:{prom_port}")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(prometheus.stop)
        cleanup.callback(exporter.stop)
        cleanup.callback(prom.http.close)
        cleanup.enter_context(maxmemory_as_in_compose(stack.url))
        exporter.start()
        prometheus.start()

        def ready() -> bool:
            for process in (prometheus, exporter):
                if not process.alive():
                    raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
            try:
                return prom.http.get("/-/ready").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=60, message=f"prometheus not ready:\n{prometheus.tail()}")

        def all_up() -> bool:
            targets = prom.targets()
            return sorted(t["labels"]["job"] for t in targets if t["health"] == "up") == sorted(jobs)

        wait_until(
            all_up,
            timeout=30,
            interval=0.5,
            message=f"targets never all up: {json.dumps(prom.targets(), indent=1)}\n{exporter.tail()}",
        )
        scraping = time.monotonic() - started_at

        # ---------------------------------------------------------------- workload
        # Two rounds. A counter series is born at its first increment, so Prometheus' first sample
        # of it already holds that count and rate()/increase() see no change: round 1 creates every
        # series (and Prometheus scrapes them), round 2 moves them.
        models_dir = tmp_path / "models"
        for round_ in (1, 2):
            run_workload(stack, round_, models_dir)
            wait_until(
                lambda n=round_: scraped(prom, n),
                timeout=20,
                interval=0.5,
                message=f"round {round_} of the workload never reached Prometheus",
            )
        workload_done = time.monotonic()

        # ---------------------------------------------------------------- what must have data
        checks: dict[str, str] = {}  # PromQL -> what it is
        panels, variables = dashboard_queries()
        for uid, title, expr in panels:
            checks.setdefault(expr, f"panel {uid} / {title!r}")
        for uid, name, _, query in variables:
            checks.setdefault(query, f"variable {uid} / ${name}")
        rules = [rule for path in sorted(RULES_DIR.glob("*.yml")) for rule in load_rules(path)]
        recording = [rule for rule in rules if "record" in rule]
        alerts = [rule for rule in rules if "alert" in rule]
        assert recording and alerts and len(recording) + len(alerts) == len(rules)
        for rule in recording:
            checks.setdefault(rule["expr"], f"recording rule {rule['record']} (expr)")
            checks.setdefault(rule["record"], f"recording rule {rule['record']} (recorded series)")
        alert_inputs = set()
        for rule in alerts:  # every series an alert reads exists, label matchers included
            for selector in vector_selectors(rule["expr"]):
                alert_inputs.add(selector)
                checks.setdefault(f"count({selector})", f"input {selector} of alert {rule['alert']}")

        missing: dict[str, str] = dict(checks)
        deadline = time.monotonic() + 30
        while missing and time.monotonic() < deadline:
            missing = {q: what for q, what in missing.items() if not prom.finite(q)}
            if missing:
                time.sleep(1)
        assert not missing, "no data (or only NaN) for:\n" + "\n".join(f"  {what}: {q}" for q, what in missing.items())
        for rule in alerts:  # every alert expression is valid PromQL against live data
            prom.query(rule["expr"])

        def rules_healthy() -> list[dict]:
            loaded = prom.rules()
            return loaded if loaded and all(r["health"] == "ok" for r in loaded) else []

        evaluated = wait_until(
            rules_healthy,
            timeout=15,
            interval=0.5,
            message="a rule is unhealthy: "
            + repr([(r["name"], r["health"], r.get("lastError")) for r in prom.rules()]),
        )
        assert len(evaluated) == len(rules)

        # ---------------------------------------------------------------- kill the worker
        no_worker = next(a["expr"] for a in alerts if a["alert"] == "LibrarianNoLiveWorker")
        target_down = next(a["expr"] for a in alerts if a["alert"] == "LibrarianTargetDown")
        wait_until(
            lambda: not prom.query(no_worker) and not prom.query(target_down),
            timeout=15,
            interval=0.5,
            message="LibrarianNoLiveWorker or LibrarianTargetDown true while everything runs",
        )
        os.killpg(stack.worker.pid, signal.SIGKILL)  # the main process and its pool: a lost host
        killed_at = time.monotonic()
        wait_until(
            lambda: prom.query(no_worker),
            timeout=20,
            interval=0.25,
            message="LibrarianNoLiveWorker expression still false 20 s after SIGKILL",
        )
        no_worker_after = time.monotonic() - killed_at
        down = wait_until(
            lambda: prom.query(target_down),
            timeout=10,
            interval=0.25,
            message="LibrarianTargetDown expression never saw the dead worker",
        )
        assert {s["metric"]["job"] for s in down} == {"worker"}, down
        pending = wait_until(
            lambda: [a for a in prom.alerts() if a["labels"]["alertname"] == "LibrarianNoLiveWorker"],
            timeout=10,
            interval=0.25,
            message="the loaded rule never put LibrarianNoLiveWorker in pending",
        )
        assert pending[0]["state"] in ("pending", "firing"), pending

        print(
            f"\n[prometheus-live] {len(checks)} distinct queries returned finite data: {len(panels)} panel "
            f"queries of {len(DASHBOARDS)} dashboards, {len(variables)} variable queries, {len(recording)} "
            f"recording rules (expression and recorded series), {len(alert_inputs)} series read by "
            f"{len(alerts)} alerts (whose expressions all evaluated; {len(rules)} rules healthy).\n"
            f"[prometheus-live] stack up {stack_ready:.1f}s, all {len(jobs)} targets up {scraping:.1f}s, "
            f"workload scraped {workload_done - started_at:.1f}s, LibrarianNoLiveWorker true "
            f"{no_worker_after:.1f}s after SIGKILL, {time.monotonic() - started_at:.1f}s in all"
        )
