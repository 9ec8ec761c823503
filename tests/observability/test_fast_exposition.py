"""The worker's fast /metrics renderer gives the same samples as prometheus_client's own merge
(METRICS_EXPOSITION=fast and =stock serve the same series and values)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from prometheus_client.parser import text_string_to_metric_families

from tests.utils.processes import ROOT

WRITER = textwrap.dedent("""
    import os, random
    from app.observability import metrics as m
    random.seed(int(os.environ["SEED"]))
    for task in ("a.one", "b.two", 'c."quoted"\\\\x'):
        for queue in ("default", "pipeline"):
            m.TASKS_STARTED.labels(task, queue).inc(random.randint(0, 5))
            m.TASK_EXCEPTIONS.labels(task, queue, "ValueError").inc()
            for _ in range(random.randint(1, 20)):
                m.TASK_RUNTIME.labels(task, queue, "success").observe(random.random() * 100)
    m.TASKS_ACTIVE.inc(2)
    m.TASKS_REJECTED.labels("decode_error").inc(int(os.environ["SEED"]))
""")

READER = textwrap.dedent("""
    import os, sys
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from pathlib import Path
    from app.core.config import settings
    from app.observability.metrics_server import make_app, reap_dead_processes
    reap_dead_processes(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))  # as each scrape does first
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
    texts = [generate_latest(registry).decode()]
    for mode in ("fast", "stock"):
        settings.METRICS_EXPOSITION = mode
        texts.append(b"".join(make_app([])({"PATH_INFO": "/metrics"}, lambda *a: None)).decode())
    sys.stdout.write("\\n=====\\n".join(texts))
""")


def families(text: str) -> set[tuple[str, str, str]]:
    return {(family.name, family.type, family.documentation) for family in text_string_to_metric_families(text)}


def samples(text: str) -> set[tuple[str, tuple, float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), round(s.value, 9))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_fast_and_stock_expositions_match_prometheus_client(tmp_path):
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "ENVIRONMENT": "test",
        "FLOWER_PASSWORD": "not-a-placeholder",
    }
    for seed in (1, 2, 3):  # three writer processes, like pool children
        subprocess.run([sys.executable, "-c", WRITER], env={**env, "SEED": str(seed)}, cwd=ROOT, check=True)
    out = subprocess.run(
        [sys.executable, "-c", READER], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    reference, fast, stock = out.split("\n=====\n")
    assert samples(reference), "the writers wrote nothing"
    assert samples(fast) == samples(reference)
    assert samples(stock) == samples(reference)
    assert families(fast) == families(stock) == families(reference)


RESCRAPE = textwrap.dedent("""
    import os, sys
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from app.observability import metrics as m
    from app.observability.metrics_render import MultiProcessExposition

    def reference():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
        return generate_latest(registry).decode()

    exposition = MultiProcessExposition(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    for task in ("a.one", "b.two"):
        m.TASKS_STARTED.labels(task, "default").inc()
        m.TASK_RUNTIME.labels(task, "default", "success").observe(0.5)
    first = exposition.render([]).decode()
    # Same process, same files: only a.one's series change; b.two's text may be reused.
    m.TASKS_STARTED.labels("a.one", "default").inc(4)
    m.TASK_RUNTIME.labels("a.one", "default", "success").observe(30.0)
    second = exposition.render([]).decode()
    third = exposition.render([]).decode()
    sys.stdout.write("\\n=====\\n".join([first, second, third, reference()]))
""")


def test_a_second_scrape_shows_changed_values_and_keeps_unchanged_ones(tmp_path):
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "ENVIRONMENT": "test",
        "FLOWER_PASSWORD": "not-a-placeholder",
    }
    out = subprocess.run(
        [sys.executable, "-c", RESCRAPE], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    first, second, third, reference = out.split("\n=====\n")
    started = {labels: value for name, labels, value in samples(second) if name == "librarian_tasks_started_total"}
    assert started[(("queue", "default"), ("task", "a.one"))] == 5.0
    assert started[(("queue", "default"), ("task", "b.two"))] == 1.0
    assert samples(first) != samples(second)
    assert samples(second) == samples(reference)
    assert third == second


def test_the_setting_chooses_the_exposition(tmp_path, monkeypatch):
    """METRICS_EXPOSITION=stock never touches the fast path, and fast never the stock one."""
    from app.core.config import settings
    from app.observability import metrics_server

    class Refused:
        def __init__(self, path):  # type: ignore[no-untyped-def]
            raise AssertionError("the other exposition was used")

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for mode, other in (("stock", "MultiProcessExposition"), ("fast", "StockExposition")):
        with monkeypatch.context() as patch:
            patch.setattr(settings, "METRICS_EXPOSITION", mode)
            patch.setattr(metrics_server, other, Refused)
            statuses: list[str] = []
            app = metrics_server.make_app([])
            app({"PATH_INFO": "/metrics"}, lambda status, _headers, seen=statuses: seen.append(status))
            assert statuses == ["200 OK"], mode
