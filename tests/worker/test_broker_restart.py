"""A worker with a task in flight survives a broker restart and keeps consuming.

With exactly one task running (a free pool slot, so a BRPOP is pending) when the broker went
away, Celery's clean-up of the lost connection made kombu 5.7 raise AttributeError on the old
channel (restoring its unacknowledged message, then acknowledging the task that finished after
the outage); Celery logged "Unrecoverable error" and the worker never consumed again. Found as
the intermittent failure of tests/api/test_degradation.py; fixed in app/broker/transport.py.
"""

from __future__ import annotations

import time

import pytest
from celery import Celery

from tests.conftest import TMP, stack_database_url, stack_env, start_worker
from tests.utils.processes import free_port, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "restart-pw"


def test_a_worker_with_a_task_in_flight_survives_a_broker_restart():
    from app.core.embedded import embedded_server

    port, data_dir = free_port(), TMP / "valkey-restart"
    server = embedded_server(port=port, data_dir=data_dir, password=PASSWORD)
    server.start()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    worker = start_worker("restart", env=stack_env(REDIS_URL=url, DATABASE_URL=stack_database_url(TMP / "restart.db")))
    client = Celery(broker=url, backend=url)
    client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json")
    revived = None
    try:
        running = client.send_task("librarian.demo.sleep", kwargs={"seconds": 6, "key": "in-flight"}, queue="default")
        wait_until(lambda: running.state == "STARTED", timeout=20, message="the long task never started")
        server.stop()
        time.sleep(6)  # the task ends while the broker is away
        revived = embedded_server(port=port, data_dir=data_dir, password=PASSWORD)
        revived.start()

        after = client.send_task("librarian.demo.db_roundtrip", kwargs={"key": "after", "value": "v"}, queue="default")
        try:
            wait_until(
                lambda: after.state == "SUCCESS", timeout=45, message="the worker did not consume after the restart"
            )
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; worker output (tail):\n{worker.output()[-6000:]}") from None
        assert worker.alive()
        assert "Unrecoverable error" not in worker.output()
        # The interrupted task is not lost: its message waits in `unacked` for the visibility timeout.
        import redis

        unacked = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD).hvals("unacked")
        assert any(running.id.encode() in raw for raw in unacked) or running.state in {"SUCCESS", "FAILURE"}
    finally:
        worker.stop()
        if revived is not None:
            revived.stop()
