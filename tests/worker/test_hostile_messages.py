"""Messages the worker must refuse without running them or dying."""

from __future__ import annotations

import pickle
import uuid

import pytest

pytestmark = pytest.mark.integration


def test_pickle_message_is_refused_logged_and_worker_stays_up(worker, celery):
    from kombu import Connection, Exchange, Producer, Queue

    task_id = str(uuid.uuid4())
    body = pickle.dumps(((), {"key": "pickled", "value": "should never run"}, {}))
    mark = len(worker.output())
    with Connection(celery.conf.broker_url) as conn:
        producer = Producer(conn)
        producer.publish(
            body,
            routing_key="default",
            exchange=Exchange("default", type="direct"),
            declare=[Queue("default", Exchange("default", type="direct"), routing_key="default")],
            serializer=None,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={
                "task": "librarian.demo.db_roundtrip",
                "id": task_id,
                "lang": "py",
                "args": "()",
                "kwargs": "{}",
                "retries": 0,
            },
        )
    worker.wait_for(r"(?i)refus\w* .*pickle|pickle.*(disallow|refus)", timeout=15, after=mark)
    assert worker.alive()
    # It never ran: no row, no result; and the worker still serves.
    from sqlmodel import Session

    from app.core.db import get_engine
    from app.models import DiagnosticRecord

    with Session(get_engine()) as session:
        assert session.get(DiagnosticRecord, "pickled") is None
    assert celery.AsyncResult(task_id).state == "PENDING"
    assert celery.send_task("librarian.maintenance.health_check").get(timeout=10)["status"] == "ok"
