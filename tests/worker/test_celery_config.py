"""The Celery configuration the seeds name (000 T-022, 001, 002 MAT-58, 003 Story 0.5), as the app
and the shared base_config hold it: serialisation, acknowledgement, limits, expiry, queues, routes,
retry policies. No worker needed: this reads configuration only."""

from __future__ import annotations

import pytest
from kombu import Queue

from app.core.config import QUEUES, Settings, settings
from app.worker.celery_app import celery_app
from app.worker.routing import ROUTES, base_config, queue_for

conf = celery_app.conf


@pytest.fixture(scope="module")
def tasks():
    celery_app.loader.import_default_modules()  # what a worker imports at start-up (app.conf.imports)
    return celery_app.tasks


def test_json_only_never_pickle():
    """Seed 000: JSON serialiser, accept_content json (a pickled message is refused)."""
    assert conf.task_serializer == conf.result_serializer == conf.event_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert list(conf.result_accept_content) == ["json"]


def test_utc_and_started_state_tracked():
    assert conf.timezone == "UTC" and conf.enable_utc is True
    assert conf.task_track_started is True  # seed 000/001: PENDING → STARTED → SUCCESS/FAILURE


def test_redis_is_broker_and_result_backend():
    """Seeds 001-003: one Redis URL for both."""
    assert conf.broker_url == conf.result_backend == settings.redis_url


def test_acks_late_reject_on_worker_lost_and_prefetch_one():
    """Seed 003's reliability settings; seed 000: fetch one task at a time (large files)."""
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    # A lost pool child is a counted retry (max_retries), not an endless requeue.
    assert conf.task_retry_on_worker_lost is True


def test_time_limits_and_result_expiry_defaults(monkeypatch):
    """Seed 002: 30 min hard, 25 min soft (seed 000's 10/9 min is superseded); seed 000: results kept 1 h."""
    for name in ("TASK_TIME_LIMIT", "TASK_SOFT_TIME_LIMIT", "RESULT_EXPIRES", "WORKER_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    defaults = base_config(Settings(_env_file=None))
    assert defaults["task_time_limit"] == 30 * 60
    assert defaults["task_soft_time_limit"] == 25 * 60
    assert defaults["result_expires"] == 3600
    assert Settings(_env_file=None).WORKER_CONCURRENCY == 2  # seed 000: --concurrency=2


def test_the_app_runs_what_settings_say():
    assert conf.task_time_limit == settings.TASK_TIME_LIMIT
    assert conf.task_soft_time_limit == settings.TASK_SOFT_TIME_LIMIT < settings.TASK_TIME_LIMIT
    assert conf.result_expires == settings.RESULT_EXPIRES


def test_base_config_follows_the_settings_given():
    custom = Settings(
        _env_file=None, TASK_TIME_LIMIT=120, TASK_SOFT_TIME_LIMIT=90, RESULT_EXPIRES=60, BROKER_VISIBILITY_TIMEOUT=900
    )
    config = base_config(custom)
    assert (config["task_time_limit"], config["task_soft_time_limit"], config["result_expires"]) == (120, 90, 60)
    assert config["broker_transport_options"]["visibility_timeout"] == 900
    assert config["result_backend_transport_options"]["visibility_timeout"] == 900


def test_visibility_timeout_outlasts_the_longest_task_and_countdown():
    """Redis redelivers a message unacknowledged for the visibility timeout: it must not do so to a
    task still running, or waiting for its countdown."""
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility == settings.BROKER_VISIBILITY_TIMEOUT
    assert visibility > conf.task_time_limit + settings.MAX_TASK_COUNTDOWN


def test_the_app_keeps_every_base_setting():
    """The app adds its extensions (transport, consumer, beat) and changes nothing of base_config
    but the journal option of the transport."""
    for key, value in base_config(settings).items():
        if key == "broker_transport_options":
            assert conf[key].items() >= value.items()
            continue
        if key == "task_queues":
            assert [(q.name, q.exchange.name, q.exchange.type, q.routing_key) for q in conf[key]] == [
                (q.name, q.exchange.name, q.exchange.type, q.routing_key) for q in value
            ]
            continue
        assert conf[key] == value, key


def test_queues_one_direct_exchange_each():
    queues: list[Queue] = list(conf.task_queues)
    assert [q.name for q in queues] == list(QUEUES) == ["default", "validation", "pipeline", "maintenance"]
    assert all(q.exchange.name == q.name == q.routing_key and q.exchange.type == "direct" for q in queues)
    assert conf.task_default_queue == "default"
    assert set(settings.worker_queues) == set(QUEUES)  # a default worker consumes every queue


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("librarian.validation.validate_file", "validation"),
        ("librarian.pipeline.preprocess", "pipeline"),
        ("librarian.pipeline.publish", "pipeline"),
        ("librarian.maintenance.health_check", "maintenance"),
        ("librarian.maintenance.sweep_stuck_parts", "maintenance"),
        ("librarian.demo.process", "default"),
        ("someone.else.task", "default"),
    ],
)
def test_routes_send_each_task_to_its_queue(task_name, queue):
    assert queue_for(task_name) == queue
    assert celery_app.amqp.router.route({}, task_name, (), {})["queue"].name == queue
    assert conf.task_routes == ROUTES


def test_every_task_routes_to_a_declared_queue(tasks):
    names = [name for name in tasks if name.startswith("librarian.")]
    assert len(names) > 10
    assert {queue_for(name) for name in names} <= set(QUEUES)


def test_retry_policies(tasks):
    """Seed 000: health_check never retries; validate_file 3 retries a minute apart. The demo task
    behind T-022 test 5 retries 3 times, 1 s apart. Seed 004: a pipeline stage retries 3 times."""
    assert tasks["librarian.maintenance.health_check"].max_retries == 0
    validate = tasks["librarian.validation.validate_file"]
    assert validate.max_retries == 3 and validate.default_retry_delay == 60
    demo = tasks["librarian.demo.always_transient"]
    assert demo.max_retries == 3 and demo.default_retry_delay == 1
    stages = [task for name, task in tasks.items() if name.startswith("librarian.pipeline.")]
    assert len(stages) == 6 and all(task.max_retries == 3 for task in stages)


def test_every_task_inherits_json_and_late_acks(tasks):
    for name, task in tasks.items():
        if name.startswith("librarian."):
            assert task.serializer == "json", name
            assert task.acks_late is True and task.reject_on_worker_lost is True, name
