"""Settings: defaults derived from one another, placeholder secrets refused, URLs masked."""

from __future__ import annotations

import pytest

from app.core.config import Settings, mask_url


def test_broker_and_backend_default_to_the_redis_url():
    s = Settings(REDIS_URL="redis://:pw@example:6380/2", _env_file=None)
    assert s.broker_url == s.result_backend == "redis://:pw@example:6380/2"


def test_unset_redis_url_means_the_embedded_server():
    s = Settings(REDIS_URL=None, EMBEDDED_REDIS_PORT=7001, _env_file=None)
    assert s.uses_embedded_redis
    assert s.redis_url == "redis://127.0.0.1:7001/0"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:hunter2@host/0", "redis://user:***@host/0"),
        ("postgresql://app:pw@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_mask_url_hides_passwords(url, masked):
    assert mask_url(url) == masked


def test_placeholder_secret_is_refused_outside_development():
    with pytest.raises(ValueError, match="FLOWER_PASSWORD"):
        Settings(ENVIRONMENT="production", FLOWER_PASSWORD="changethis", _env_file=None)
    with pytest.raises(ValueError, match="FLOWER_PASSWORD"):
        Settings(ENVIRONMENT="test", FLOWER_PASSWORD="changethis", _env_file=None)


def test_placeholder_secret_is_accepted_in_development_and_flagged():
    s = Settings(ENVIRONMENT="development", FLOWER_PASSWORD="changethis", _env_file=None)
    assert s.flower_password_is_placeholder


def test_soft_limit_must_be_below_hard_limit():
    with pytest.raises(ValueError, match="TASK_SOFT_TIME_LIMIT"):
        Settings(TASK_SOFT_TIME_LIMIT=100, TASK_TIME_LIMIT=100, _env_file=None)
