"""METRICS_EXPOSITION=stock: the worker serves exact counts with prometheus_client's own collector.

The workload and its expected numbers are test_metrics_exactness.py's, run once more against a
worker whose /metrics goes through MultiProcessCollector + generate_latest instead of the fast path.
"""

from __future__ import annotations

import pytest
from celery import Celery

from tests.conftest import stack_env, start_worker
from tests.observability import test_metrics_exactness as exactness

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stock_worker(broker):
    url = broker.db_url(2)  # test_metrics_exactness's database: its module is done with it by now
    from app.worker.celery_app import celery_app

    producer = Celery("exactness-stock", set_as_current=False)
    producer.conf.update(celery_app.conf.table(with_defaults=False))
    producer.conf.update(broker_url=url, result_backend=url)
    env = stack_env(REDIS_URL=url, METRICS_EXPOSITION="stock")
    worker = start_worker("exact-stock", env=env, extra=("--queues", "default,maintenance"))
    try:
        yield producer, worker, url
    finally:
        worker.stop()


def test_stock_exposition_counts_the_workload_exactly(stock_worker):
    exactness.test_counters_and_histograms_match_the_workload(stock_worker)
    exactness.test_counters_of_known_tasks_exist_at_zero_before_any_event(stock_worker)
