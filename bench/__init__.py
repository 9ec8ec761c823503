"""Benchmarks: each module starts what it measures, measures a baseline in the same run, prints
the ratio, and stops what it started (docs/performance.md).

    python -m bench                 every benchmark, quick settings; summary + bench/results/<date>.json
    python -m bench.overhead        worker throughput, Librarian vs the bare Celery app
    python -m bench.e2e             API submit latency and submit→SUCCESS, Librarian vs bare
    python -m bench.health          /health-check/celery vs control.ping
    python -m bench.scrape          /metrics scrape time vs an empty registry
    python -m bench.hooks           Librarian's signal receivers per task, in process
    python -m bench.validation      validator vs a plain rhino3dm read
    python -m bench.hostile         hostile models through the guard and the sandbox
    python -m bench.broker          transport CPU per message: kombu stock vs journal vs journal + holders

Run from the repository root (`bench` and `tests` are imported as packages). `support/` holds the
shared harness and the helper processes, `baselines/` the bare Celery app and the bare API.
"""
