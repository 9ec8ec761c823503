"""Broker transport: CPU per message through publish, receive and ack, for each transport edge.

    python -m bench.broker [--messages 3000] [--rounds 5] [--json PATH]

One process, one embedded Valkey, kombu's consumer API as a worker's main process uses it: each
round publishes N task-sized messages to `default`, then receives and acknowledges them one by
one. Three variants, interleaved round by round so drift and foreign load fall on all of them:

- `stock`: kombu's own Redis transport (the baseline);
- `journal`: Librarian's transport, publish journal on, no holder records (no worker incarnation);
- `holders`: as a worker runs it: journal plus holder records (app/broker/holders.py).

Figure: process CPU time (user + system) per message, median over rounds; the ratio to `stock`
is what the transport's edges cost the worker's main process per task.
"""

from __future__ import annotations

import argparse
import statistics
import time

from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from app.broker import holders
from app.broker.transport import Transport
from bench.support.figures import Figure, add_json_option, write_json
from bench.support.harness import Stack, machine, table

QUEUE = Queue("default", Exchange("default", type="direct"), routing_key="default")
BODY = {"args": [], "kwargs": {"part_id": "0" * 36, "ruleset": "default"}, "embed": {}}


def one_round(url: str, variant: str, messages: int) -> float:
    """CPU seconds per message for publish + receive + ack of `messages` messages."""
    transport = kombu_redis.Transport if variant == "stock" else Transport
    options = {} if variant == "stock" else {"journal_queues": ("default",)}
    holders._incarnation = "bench@host/1/aa" if variant == "holders" else None
    with Connection(url, transport=transport, transport_options=options) as conn:
        conn.default_channel.client.flushdb()
        producer = conn.Producer(serializer="json")
        acked = 0

        def on_message(_body: object, message: object) -> None:
            nonlocal acked
            message.ack()  # type: ignore[attr-defined]
            acked += 1

        started = time.process_time()
        for n in range(messages):
            producer.publish(
                BODY,
                exchange=QUEUE.exchange,
                routing_key="default",
                declare=[QUEUE] if n == 0 else [],
                headers={"id": str(n), "task": "librarian.validation.validate_file"},
            )
        with conn.Consumer(QUEUE, callbacks=[on_message], accept=["json"]):
            while acked < messages:
                conn.drain_events(timeout=5)
        return (time.process_time() - started) / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    add_json_option(parser)
    args = parser.parse_args()
    variants = ("stock", "journal", "holders")
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    with Stack("bench-broker") as stack:
        stack.start_valkey()
        url = stack.redis_url
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else tuple(reversed(variants))
            for variant in order:
                cpu[variant].append(one_round(url, variant, args.messages))
    holders._incarnation = None
    median = {v: statistics.median(cpu[v]) for v in variants}
    rows = [(v, f"{median[v] * 1e6:.1f}", f"{median[v] / median['stock']:.3f}") for v in variants]
    print(f"{args.messages} messages x {args.rounds} rounds on {machine()}")
    print(table(("variant", "CPU us/message (median)", "ratio to stock"), rows))
    write_json(
        args.json,
        "broker",
        [
            Figure("journal, CPU per message", median["journal"] * 1e6, "us", median["stock"] * 1e6),
            Figure("journal + holders, CPU per message", median["holders"] * 1e6, "us", median["stock"] * 1e6),
            Figure("journal + holders / journal", median["holders"] / median["journal"], "ratio"),
        ],
        args,
    )


if __name__ == "__main__":
    main()
