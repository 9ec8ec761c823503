"""The worker's fast /metrics renderer gives the same samples as prometheus_client's own merge."""

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
""")

READER = textwrap.dedent("""
    import os, sys
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess
    from pathlib import Path
    from app.observability.metrics_server import make_app, reap_dead_processes
    reap_dead_processes(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))  # as each scrape does first
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
    sys.stdout.write(generate_latest(registry).decode())
    sys.stdout.write("\\n=====\\n")
    out = make_app([])({"PATH_INFO": "/metrics"}, lambda *a: None)
    sys.stdout.write(b"".join(out).decode())
""")


def samples(text: str) -> set[tuple[str, tuple, float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), round(s.value, 9))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_fast_renderer_matches_prometheus_client(tmp_path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "ENVIRONMENT": "test",
           "FLOWER_PASSWORD": "not-a-placeholder"}
    for seed in (1, 2, 3):  # three writer processes, like pool children
        subprocess.run([sys.executable, "-c", WRITER], env={**env, "SEED": str(seed)}, cwd=ROOT, check=True)
    out = subprocess.run([sys.executable, "-c", READER], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    reference, fast = out.split("\n=====\n")
    assert samples(reference), "the writers wrote nothing"
    assert samples(fast) == samples(reference)
