"""Model-quality metrics, `part finished` log lines and Sentry events, exact for a known set of models.

The integration test uploads real models (tests/fixtures/real, their golden reports give the
expected findings) and generated ones to a real API and a real prefork worker (concurrency 2,
multiprocess metrics) with a Sentry DSN pointing at a local sink; one more part fails (a message
naming a ruleset version that does not exist). Then it scrapes the worker's /metrics.

No model of the corpus or of the fixtures makes a check raise (test_real_corpus.py asserts it
for the corpus), so CHECK_ERROR is covered in-process: a report holding check errors goes through
`part_finished` with a real Sentry client sending to the same kind of sink.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk
from celery import Celery
from prometheus_client import REGISTRY
from sqlmodel import Session, create_engine
from structlog.testing import capture_logs

from app import crud
from app.models import PartStatus
from app.observability import metrics as m
from app.observability import model_metrics
from app.validation import guarded, validate_path
from app.validation.bounds import finalise
from app.validation.codes import CHECK_ERROR, finding
from app.validation.rules import ValidationRules
from app.worker.celery_app import celery_app
from tests.conftest import stack_database_url, stack_env, start_api, start_worker
from tests.fixtures import hostile_3dm, models_3dm
from tests.ops import metric_contract as contract
from tests.utils.api import report_of, upload, wait_finished
from tests.utils.metrics import scrape, value
from tests.utils.processes import wait_until
from tests.utils.sentry_sink import SentrySink

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "fixtures" / "real"
STRICT_CAP = 3
STRICT_TOML = f"""description = "test: NAME_MISSING is an error, {STRICT_CAP} findings listed per code"
severity = {{ NAME_MISSING = "error" }}
max_findings_per_code = {STRICT_CAP}
"""
# real model -> ruleset (its golden report was made with the defaults)
REAL_MODELS = {
    "wall model.3dm": "default",
    "v2_my_spot_light.3dm": "default",
    "MeshSphere_r5.3dm": "default",
    "v3_my_points.3dm": "default",
    "light.3dm": "default",  # 3.1 MB: size class 1mb_10mb
    "v2_5_curves.3dm": "strict",
    "v2_23_points.3dm": "strict",
    "8_3_surface deviation.3dm": "strict",
}
GENERATED = {"valid_part": "validated", "bad_names": "rejected"}
UNREADABLE = {
    "corrupt_bytes": "corrupt",
    "truncated": "truncated",
    "not_3dm": "not_3dm",
    "header_version_1": "bad_header",
}
RULESETS = ("default", "strict")
MODEL_METRICS = {
    "librarian_parts_finished_total",
    "librarian_findings_total",
    "librarian_validation_duration_seconds",
    "librarian_model_size_bytes",
    "librarian_model_objects",
    "librarian_models_unreadable_total",
}  # and librarian_check_errors_total, which no model here produces


def golden_counts(name: str, ruleset: str) -> tuple[Counter[tuple[str, str]], int]:
    """(every finding of the model by (code, severity) under `ruleset`, object count), from its
    golden report (made with the defaults: max 500 per code, which none of these reaches)."""
    golden = json.loads((REAL / "expected" / f"{name}.json").read_text(encoding="utf-8"))
    counts: Counter[tuple[str, str]] = Counter()
    for f in golden["findings"]:
        severity = "error" if ruleset == "strict" and f["code"] == "NAME_MISSING" else f["severity"]
        counts[(f["code"], severity)] += 1
    if ruleset == "strict":
        per_code = Counter(code for code, _ in counts.elements())
        counts[("FINDINGS_TRUNCATED", "info")] += sum(1 for n in per_code.values() if n > STRICT_CAP)
    return counts, golden["summary"]["objects"]


def listed_counts(report: dict[str, Any]) -> Counter[tuple[str, str]]:
    """The findings a report lists, plus those its FINDINGS_TRUNCATED findings say were left out."""
    counts = Counter((f["code"], f["severity"]) for f in report["findings"])
    for f in report["findings"]:
        if f["code"] == "FINDINGS_TRUNCATED":
            severity = next(g["severity"] for g in report["findings"] if g["code"] == f["details"]["finding_code"])
            counts[(f["details"]["finding_code"], severity)] += f["details"]["omitted"]
    return counts


@pytest.fixture(scope="module")
def stack(broker, tmp_root):
    """API and worker on their own Redis database, SQLite file and rulesets (default, strict)."""
    sink = SentrySink()
    rulesets = tmp_root / "model-metrics-rulesets"
    rulesets.mkdir(exist_ok=True)
    shutil.copy(ROOT / "rulesets" / "default.toml", rulesets / "default.toml")
    (rulesets / "strict.toml").write_text(STRICT_TOML, encoding="utf-8")
    database = stack_database_url(tmp_root / "model-metrics.db")
    env = stack_env(
        REDIS_URL=broker.db_url(12),
        DATABASE_URL=database,
        RULESETS_DIR=str(rulesets),
        SENTRY_DSN=sink.dsn,
        SENTRY_TRACES_SAMPLE_RATE="0",
    )
    api, base = start_api("api-model-metrics", env=env)
    worker = start_worker("model-metrics", env=env)
    try:
        yield sink, base, worker, env
    finally:
        worker.stop()
        api.stop()
        sink.close()


def fail_one_part(env: dict[str, str]) -> str:
    """A queued part whose message names a ruleset version that does not exist: validate_file
    raises UnknownRuleset (not retried), on_failure marks it failed."""
    engine = create_engine(env["DATABASE_URL"])
    with Session(engine) as session:
        part = crud.create_part(session, filename="gone.3dm", storage_key="parts/gone.3dm", size_bytes=1234, sha256="")
        crud.update_part(session, part=part, status=PartStatus.QUEUED, ruleset_name="strict", ruleset_version=1)
        part_id = str(part.id)
    engine.dispose()
    producer = Celery("model-metrics-producer", set_as_current=False)
    producer.conf.update(celery_app.conf.table(with_defaults=False))
    producer.conf.update(broker_url=env["REDIS_URL"], result_backend=env["REDIS_URL"])
    producer.send_task(
        "librarian.validation.validate_file", args=[part_id], kwargs={"ruleset": "strict", "ruleset_version": 999}
    )
    return part_id


@pytest.mark.integration
def test_model_metrics_logs_and_sentry_events_are_exact(stack, tmp_root):
    sink, base, worker, env = stack
    models = tmp_root / "model-metrics-models"
    models.mkdir(exist_ok=True)
    files: dict[str, tuple[Path, str]] = {name: (REAL / name, ruleset) for name, ruleset in REAL_MODELS.items()}
    for name in (*GENERATED, *UNREADABLE):
        make = getattr(hostile_3dm if name == "header_version_1" else models_3dm, name)
        files[name] = (make(models), "default")

    parts: dict[str, str] = {}
    with httpx.Client(base_url=base, timeout=10) as http:
        for name, (path, ruleset) in files.items():
            answer = upload(
                http, path, name=f"{name}.3dm" if not name.endswith(".3dm") else name, params={"ruleset": ruleset}
            )
            assert answer.status_code == 202, (name, answer.text)
            parts[name] = answer.json()["part_id"]
        failed_id = fail_one_part(env)
        finished = {name: wait_finished(http, part_id, timeout=30) for name, part_id in parts.items()}
        reports = {name: report_of(http, part_id) for name, part_id in parts.items()}
        assert wait_finished(http, failed_id, timeout=30)["status"] == "failed"

    # What each part should count: goldens for the real models, the reports for the generated ones.
    outcomes: Counter[tuple[str, str]] = Counter({("failed", "strict"): 1})
    findings: Counter[tuple[str, str, str]] = Counter()
    objects: dict[str, int] = {}
    for name, (_, ruleset) in files.items():
        report = reports[name]
        if name in REAL_MODELS:
            counts, objects[name] = golden_counts(name, ruleset)
            assert listed_counts(report) == counts, name
            expected_status = "rejected" if any(severity == "error" for _, severity in counts) else "validated"
        else:
            counts = listed_counts(report)
            expected_status = GENERATED.get(name, "rejected")
            if name not in UNREADABLE:
                objects[name] = report["summary"]["objects"]
        assert finished[name]["status"] == expected_status, (name, finished[name])
        assert sum(n for (_, sev), n in counts.items() if sev == "error") == report["summary"]["counts"]["error"]
        outcomes[(expected_status, ruleset)] += 1
        for (code, severity), n in counts.items():
            findings[(code, severity, ruleset)] += n

    def settled():
        s = scrape(worker.metrics_url)
        done = value(s, "librarian_parts_finished_total")
        return s if done == len(parts) + 1 and value(s, "librarian_tasks_active") == 0 else None

    s = wait_until(settled, timeout=15, message="the worker never counted every part")

    # The contract's rows and label values are what the worker exports.
    assert (contract.PART_OUTCOMES, contract.SIZE_CLASSES) == (m.PART_OUTCOMES, m.SIZE_CLASSES)
    assert (contract.UNREADABLE_REASONS, contract.SEVERITIES) == (m.UNREADABLE_REASONS, model_metrics.SEVERITIES)
    for metric in (c for c in contract.METRICS if c.name in MODEL_METRICS):
        sample_name = f"{metric.name}_count" if metric.type == "histogram" else metric.name
        keys = {tuple(sorted(k for k, _ in labels)) for (name, labels) in s if name == sample_name}
        assert keys == {tuple(sorted(metric.labels))}, metric.name

    for outcome in m.PART_OUTCOMES:
        for ruleset in RULESETS:
            labels = {"outcome": outcome, "ruleset": ruleset}
            assert ("librarian_parts_finished_total", tuple(sorted(labels.items()))) in s, labels  # created at 0
            assert value(s, "librarian_parts_finished_total", **labels) == outcomes[(outcome, ruleset)], labels
    exported = {
        (dict(labels)["code"], dict(labels)["severity"], dict(labels)["ruleset"]): v
        for (name, labels), v in s.items()
        if name == "librarian_findings_total" and v
    }
    assert exported == dict(findings)
    assert value(s, "librarian_findings_total", code="ENGINE_CRASH", severity="error", ruleset="strict") == 0
    assert ("librarian_findings_total", (("code", "ENGINE_CRASH"), ("ruleset", "strict"), ("severity", "error"))) in s

    unreadable = Counter(UNREADABLE.values())
    for reason in m.UNREADABLE_REASONS:
        assert ("librarian_models_unreadable_total", (("reason_code", reason),)) in s, reason
        assert value(s, "librarian_models_unreadable_total", reason_code=reason) == unreadable[reason], reason

    sizes = {name: path.stat().st_size for name, (path, _) in files.items()}
    by_class = Counter(model_metrics.size_class(size) for size in sizes.values())
    assert by_class["1mb_10mb"] == 1
    for size_class in m.SIZE_CLASSES:
        count = value(s, "librarian_validation_duration_seconds_count", size_class=size_class)
        assert count == by_class[size_class], size_class
    assert value(s, "librarian_validation_duration_seconds_sum") > 0
    assert value(s, "librarian_model_size_bytes_count") == len(files)
    assert value(s, "librarian_model_size_bytes_sum") == sum(sizes.values())
    assert value(s, "librarian_model_objects_count") == len(objects)
    assert value(s, "librarian_model_objects_sum") == sum(objects.values())
    # No model here makes a check raise: only the model-level series created at 0 exist, all at 0.
    check_errors = {
        dict(labels)["check"]: v for (name, labels), v in s.items() if name == "librarian_check_errors_total"
    }
    assert check_errors == dict.fromkeys(m.MODEL_LEVEL_CHECKS, 0.0)

    # One `part finished` line per part, with the report's figures.
    lines = {line["part_id"]: line for line in worker.json_lines() if line.get("event") == "part finished"}
    assert set(lines) == {*parts.values(), failed_id}
    assert sum(1 for line in worker.json_lines() if line.get("event") == "part finished") == len(parts) + 1
    line = lines[parts["v3_my_points.3dm"]]
    assert line["level"] == "info"
    assert line["outcome"] == "rejected" and line["ruleset"] == "default"
    assert line["counts"] == {"error": 3, "warning": 2, "info": 0}
    assert line["top_codes"] == {"NAME_PATTERN": 3, "LAYER_NAME_PATTERN": 2}
    assert line["size_bytes"] == sizes["v3_my_points.3dm"] and line["object_count"] == 3
    assert 0 < line["duration_s"] < 30
    strict = lines[parts["v2_23_points.3dm"]]
    assert strict["top_codes"] == {"NAME_MISSING": 23, "FINDINGS_TRUNCATED": 1}
    assert lines[parts["not_3dm"]]["reason_code"] == "not_3dm"
    assert lines[failed_id]["outcome"] == "failed" and lines[failed_id]["ruleset"] == "strict"
    assert lines[failed_id]["error"] == "UnknownRuleset"

    # Sentry: the failed part is the Celery integration's one event, tagged with the part.
    def failure_events():
        return [e for e in sink.of_type("event") if (e.get("tags") or {}).get("part_id") == failed_id]

    wait_until(failure_events, timeout=10, message="no Sentry event for the failed part")
    time.sleep(1.0)
    (event,) = failure_events()
    assert event["exception"]["values"][-1]["type"] == "UnknownRuleset"
    assert event["tags"]["component"] == "worker"
    events = sink.of_type("event")
    assert not [e for e in events if (e.get("fingerprint") or [None])[0] == "check-error"]
    tagged = {(e.get("tags") or {}).get("part_id") for e in events}
    assert tagged <= {failed_id}, "an event for a part that did not fail"
    everything = json.dumps(sink.items)
    for secret in ("wall 1", "LIB-Z01-WALL-002", "temp layer", "v3_my_points", "valid_part.3dm"):
        assert secret not in everything, secret


# ---- CHECK_ERROR, in-process ------------------------------------------------------------------


def check_error_report() -> dict[str, Any]:
    """A report as the engine builds it when checks raise (engine.py): a failed table read, an
    attributes error on a Point, 3 bounding-box errors on Breps; the per-code cap (4) leaves the
    last one out of the list."""
    pending: list[tuple[int | None, dict[str, Any]]] = [
        (
            None,
            finding(CHECK_ERROR, "reading the model's layers failed", check="layers", exception="KeyError", kind=None),
        ),
        (
            0,
            finding(
                CHECK_ERROR, "name 'secret-name'", check="attributes", exception="UnicodeDecodeError", kind="Point"
            ),
        ),
    ]
    for i in range(1, 4):
        error = finding(
            CHECK_ERROR,
            f"check 'bounding box' failed on a Brep: RuntimeError: secret-object-{i}",
            check="bounding box",
            exception="RuntimeError",
            kind="Brep",
        )
        pending.append((i, error))
    rules = ValidationRules(max_findings_per_code=4)
    found, counts = finalise(pending, lambda index: str(uuid.UUID(int=index + 1)), rules)
    return {
        "summary": {"counts": counts, "passed": True, "objects": 4, "duration_seconds": 0.1},
        "metadata": {"archive_version": 80, "file_name": "secret-file.3dm"},
        "findings": found,
        "rules": rules.as_dict(),
    }


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_check_errors_are_counted_logged_and_sent_once_per_check_and_object_type():
    report = check_error_report()
    keys = [("bounding box", "Brep"), ("attributes", "Point"), ("layers", "model"), ("omitted", "omitted")]
    before = {key: sample("librarian_check_errors_total", check=key[0], object_type=key[1]) for key in keys}
    warnings_before = sample("librarian_findings_total", code="CHECK_ERROR", severity="warning", ruleset="test")
    sink = SentrySink()
    client = sentry_sdk.Client(dsn=sink.dsn, default_integrations=False, auto_enabling_integrations=False)
    try:
        with sentry_sdk.new_scope() as scope, capture_logs() as logs:
            scope.set_client(client)
            scope.add_breadcrumb(message="secret-breadcrumb")
            model_metrics.part_finished(
                part_id="p-1",
                outcome="validated",
                ruleset="test",
                ruleset_version=1,
                report=report,
                duration_s=0.5,
                size_bytes=2_000_000,
            )
        client.flush(timeout=5)
        wait_until(lambda: len(sink.of_type("event")) >= 3, timeout=5, message="fewer than 3 check-error events")
        time.sleep(0.2)
        events = sink.of_type("event")
    finally:
        client.close()
        sink.close()

    added = {
        key: sample("librarian_check_errors_total", check=key[0], object_type=key[1]) - before[key] for key in keys
    }
    assert added == {
        ("bounding box", "Brep"): 2,
        ("attributes", "Point"): 1,
        ("layers", "model"): 1,
        ("omitted", "omitted"): 1,
    }
    after = sample("librarian_findings_total", code="CHECK_ERROR", severity="warning", ruleset="test")
    assert after - warnings_before == 5

    assert sorted(tuple(e["fingerprint"]) for e in events) == [
        ("check-error", "attributes", "Point"),
        ("check-error", "bounding box", "Brep"),
        ("check-error", "layers", "model"),
    ]
    for event in events:
        tags = event["tags"]
        assert tags["part_id"] == "p-1"
        assert (tags["check"], tags["object_type"]) == tuple(event["fingerprint"][1:])
        assert tags["archive_version"] == "80"
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", tags["rhino3dm_version"])
        assert not event.get("breadcrumbs", {}).get("values")
    brep = next(e for e in events if e["tags"]["check"] == "bounding box")
    assert brep["extra"] == {"occurrences": 2, "exceptions": ["RuntimeError"]}
    assert "secret" not in json.dumps(events)

    (line,) = [entry for entry in logs if entry["event"] == "part finished"]
    assert line["check_errors"] == 5
    assert line["counts"] == {"error": 0, "warning": 5, "info": 1}
    assert line["top_codes"] == {"CHECK_ERROR": 5, "FINDINGS_TRUNCATED": 1}
    assert line["size_class"] == "1mb_10mb"


# ---- pure parts ---------------------------------------------------------------------------------


def test_findings_cut_by_max_report_bytes_still_add_up_to_the_summary():
    report = validate_path(REAL / "NurbsDegree.3dm", rules={"max_report_bytes": 10_000, "max_findings_per_code": 100})
    assert any(f["code"] == "REPORT_TRUNCATED" for f in report["findings"])
    counts = model_metrics.finding_counts(report)
    for severity in ("error", "warning", "info"):
        assert sum(n for (_, sev), n in counts.items() if sev == severity) == report["summary"]["counts"][severity]
    assert counts[("NAME_MISSING", "warning")] + counts[("omitted", "warning")] == 249


def test_size_classes_have_exact_boundaries():
    assert [model_metrics.size_class(n) for n in (0, 999_999, 1_000_000, 9_999_999, 10**7, 10**8 - 1, 10**8)] == [
        "lt_1mb",
        "lt_1mb",
        "1mb_10mb",
        "1mb_10mb",
        "10mb_100mb",
        "10mb_100mb",
        "ge_100mb",
    ]


def test_label_sets_cover_every_reason_code_and_verdict_the_validation_can_produce():
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "app" / "validation").glob("*.py"))
    # UnreadableModelError(<message>, "<code>"): the message may hold quoted strings and parentheses
    call = r'UnreadableModelError\((?:[^"()]|"[^"]*"|\([^()]*\))*?,\s*"([a-z_0-9]+)"\s*\)'
    raised = set(re.findall(call, sources))
    assert len(raised) >= 7
    assert raised | {"missing"} == set(m.UNREADABLE_REASONS)  # missing: ModelFileMissingError
    verdicts = (guarded.MODEL_UNREADABLE, guarded.MODEL_TOO_LARGE, guarded.RESOURCE_LIMIT, guarded.ENGINE_CRASH)
    assert set(model_metrics.VERDICT_CODES) == set(verdicts)


def test_the_series_created_at_zero_name_every_table_check_of_the_engine():
    """`m.MODEL_LEVEL_CHECKS` repeats the names the engine guards its table reads with: a renamed or
    added table check must show up there too, or its series would be missing until its first error."""
    from app.validation import engine

    source = Path(engine.__file__).read_text()
    guarded_reads = set(re.findall(r'guard\(\s*"([^"]+)"', source))
    assert guarded_reads == set(m.MODEL_LEVEL_CHECKS)
