"""Retry policies (unit): validate_file 3 retries TASK_RETRY_DELAY apart (seed 000), a pipeline stage
backing off exponentially with jitter up to PIPELINE_RETRY_BACKOFF_MAX (seed 004), every countdown
within what the start-up check sizes the visibility timeout for. The retries themselves run against
real workers in tests/api/test_batches.py (a stage) and tests/reliability/test_database_lock.py
(validate_file)."""

from __future__ import annotations

import pytest

from app.core.config import Settings, settings
from app.worker.tasks.pipeline import STAGE_TASKS, TRANSIENT_ERRORS, retry_countdown
from app.worker.tasks.validation import validate_file


def test_the_defaults_follow_the_seeds():
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert defaults["TASK_RETRY_DELAY"] == 60
    assert defaults["PIPELINE_RETRY_BACKOFF_MAX"] == 600
    assert defaults["PIPELINE_MAX_RETRIES"] == 3
    # The nominal waits with the defaults: 150, 300, 600 s (17.5 min), never under half of that.
    waits = [
        retry_countdown(n, factor=defaults["PIPELINE_RETRY_BACKOFF"], maximum=600, jitter=lambda: 0.0) for n in range(3)
    ]
    assert waits == [150, 300, 600]


def test_validate_file_retries_three_times_task_retry_delay_apart_on_transient_errors_only():
    assert validate_file.max_retries == 3
    assert validate_file.default_retry_delay == min(settings.TASK_RETRY_DELAY, settings.MAX_TASK_COUNTDOWN)
    assert not getattr(validate_file, "retry_backoff", False)  # a fixed delay: a backoff would replace it
    from sqlalchemy.exc import OperationalError

    from app.validation import UnreadableModelError

    assert OperationalError in validate_file.autoretry_for
    assert not issubclass(UnreadableModelError, tuple(validate_file.autoretry_for))


def test_stage_tasks_retry_pipeline_max_retries_times():
    for task in STAGE_TASKS.values():
        assert task.max_retries == settings.PIPELINE_MAX_RETRIES
    from app.pipeline.stages import StageRejected

    assert not issubclass(StageRejected, TRANSIENT_ERRORS)
    assert issubclass(FileNotFoundError, TRANSIENT_ERRORS)  # storage not mounted (yet)


def test_backoff_doubles_up_to_the_maximum():
    waits = [retry_countdown(n, factor=2, maximum=20, jitter=lambda: 0.0) for n in range(6)]
    assert waits == [2, 4, 8, 16, 20, 20]


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999])
def test_jitter_shortens_each_wait_by_at_most_half(draw):
    for n in range(6):
        nominal = min(2 * 2**n, 20)
        wait = retry_countdown(n, factor=2, maximum=20, jitter=lambda: draw)
        assert nominal / 2 <= wait <= nominal
        assert wait == pytest.approx(nominal * (1 - draw / 2), abs=0.06)  # rounded to 0.1 s


def test_waits_differ_between_items_failing_together():
    waits = {retry_countdown(3, factor=150, maximum=600) for _ in range(50)}
    assert len(waits) > 10
    assert all(300 <= w <= 600 for w in waits)


def test_no_countdown_exceeds_max_task_countdown(monkeypatch):
    """The start-up check (app/worker/startup_checks.py) sizes the visibility timeout for
    MAX_TASK_COUNTDOWN: a longer retry countdown would get a waiting task redelivered."""
    monkeypatch.setattr(settings, "MAX_TASK_COUNTDOWN", 100)
    assert retry_countdown(5, factor=150, maximum=600, jitter=lambda: 0.0) == 100
    assert retry_countdown(0, factor=150, maximum=600, jitter=lambda: 0.0) == 100
    monkeypatch.setattr(settings, "MAX_TASK_COUNTDOWN", 0)
    assert retry_countdown(2, factor=150, maximum=600) == 0


def test_the_defaults_pass_the_start_up_check():
    defaults = Settings.model_fields
    visibility = defaults["BROKER_VISIBILITY_TIMEOUT"].default
    needed = defaults["TASK_TIME_LIMIT"].default + defaults["MAX_TASK_COUNTDOWN"].default
    assert visibility > needed
    longest_wait = max(defaults["TASK_RETRY_DELAY"].default, defaults["PIPELINE_RETRY_BACKOFF_MAX"].default)
    assert longest_wait <= defaults["MAX_TASK_COUNTDOWN"].default
