"""Start-up checks: unsafe visibility timeouts refused, evicting brokers reported (unit); a real
worker refusing to start on a bad ruleset file."""

from __future__ import annotations

import pytest
from celery import Celery

from app.worker.startup_checks import (
    UnsafeConfigurationError,
    check_broker_durability,
    check_visibility_timeout,
)
from tests.conftest import TMP, stack_env
from tests.utils.processes import ManagedProcess, cli


def make_app(visibility: int, hard_limit: int) -> Celery:
    app = Celery("probe", set_as_current=False)
    app.conf.broker_transport_options = {"visibility_timeout": visibility}
    app.conf.task_time_limit = hard_limit
    return app


def test_visibility_timeout_shorter_than_a_hard_limit_is_refused():
    with pytest.raises(UnsafeConfigurationError, match="redelivers"):
        check_visibility_timeout(make_app(visibility=1800, hard_limit=1800))


def test_a_task_with_a_longer_limit_of_its_own_is_taken_into_account():
    app = make_app(visibility=100_000, hard_limit=60)

    @app.task(time_limit=200_000, shared=False)
    def slow() -> None: ...

    with pytest.raises(UnsafeConfigurationError):
        check_visibility_timeout(app)


def test_the_default_configuration_passes():
    from app.worker.celery_app import celery_app

    check_visibility_timeout(celery_app)


class FakeRedis:
    def __init__(self, **config: str) -> None:
        self.config = config

    def config_get(self, name: str) -> dict[str, str]:
        return {name: self.config.get(name, "")}


def test_evicting_broker_without_persistence_is_reported():
    warnings = check_broker_durability(FakeRedis(**{"maxmemory-policy": "allkeys-lru", "appendonly": "no"}))
    assert any("evict" in w for w in warnings)
    assert any("persistence" in w for w in warnings)


def test_durable_broker_is_not_reported():
    assert check_broker_durability(FakeRedis(**{"maxmemory-policy": "noeviction", "appendonly": "yes"})) == []


@pytest.mark.integration
def test_a_worker_with_a_bad_ruleset_file_exits_naming_the_file_and_the_field(broker, tmp_path):
    (tmp_path / "team-bad.toml").write_text("name_pattern = 'SF-(C'\n")
    process = ManagedProcess(
        "worker-bad-ruleset",
        cli("worker", "--name", "bad-ruleset@%h"),
        stack_env(RULESETS_DIR=str(tmp_path)),
        TMP / "logs",
    )
    process.start()
    try:
        status = process.process.wait(timeout=60)
    finally:
        process.stop()
    output = process.output()
    assert status != 0
    assert "rulesets unusable, worker not started" in output
    assert f"{tmp_path / 'team-bad.toml'}: name_pattern: invalid regular expression" in output
    assert "worker ready" not in output
