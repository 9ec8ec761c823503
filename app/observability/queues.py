"""Queue depth at scrape time: pipelined LLEN over every routed queue and its priority sub-queues."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.core.config import QUEUES
from app.core.workers import live_workers

# kombu's Redis transport keeps priorities in sub-lists named <queue><sep><priority>.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


def queue_keys(queue: str) -> list[str]:
    return [queue] + [f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS if step]


def queue_depths(client: Any, queues: Iterable[str] = QUEUES) -> dict[str, int]:
    """One round trip for all queues: 4 LLEN per queue in a single pipeline."""
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in queue_keys(queue):
            pipe.llen(key)
    lengths = pipe.execute()
    per_queue = len(PRIORITY_STEPS)
    return {q: sum(lengths[i * per_queue : (i + 1) * per_queue]) for i, q in enumerate(queues)}


class BrokerCollector(Collector):
    """Queue depth and live workers, computed when Prometheus scrapes (never stale)."""

    def __init__(self, client_factory: Any, *, include_workers: bool) -> None:
        self.client_factory = client_factory
        self.include_workers = include_workers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("librarian_broker_up", "1 when the broker answered this scrape")
        try:
            client = self.client_factory()
            depths = queue_depths(client)
            workers = live_workers(client) if self.include_workers else None
        except Exception:  # noqa: BLE001 (any failure means the broker did not answer: broker_up 0)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("librarian_queue_depth", "Messages waiting in a queue", labels=["queue"])
        for queue, length in depths.items():
            depth.add_metric([queue], length)
        yield depth
        if workers is not None:
            alive = GaugeMetricFamily("librarian_workers_alive", "Workers with a live heartbeat")
            alive.add_metric([], len(workers))
            yield alive
