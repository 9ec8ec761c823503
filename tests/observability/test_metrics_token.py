"""/metrics behind an optional bearer token (unit: API dependency and worker WSGI app)."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from app.api.metrics import require_metrics_token
from app.core.config import settings
from app.observability import metrics_server


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setattr(settings, "METRICS_TOKEN", "s3cret-token")
    return "s3cret-token"


def test_no_token_configured_means_open(monkeypatch):
    monkeypatch.setattr(settings, "METRICS_TOKEN", "")
    require_metrics_token(None)
    assert metrics_server.authorized(None)


def test_api_refuses_missing_or_wrong_token(token):
    for header in (None, "Bearer nope", token):
        with pytest.raises(HTTPException) as info:
            require_metrics_token(header)
        assert info.value.status_code == 401
    require_metrics_token(f"Bearer {token}")


def test_worker_endpoint_refuses_missing_or_wrong_token(token, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    app = metrics_server.make_app([])
    statuses = []

    def start_response(status, headers):
        statuses.append(status)

    app({"PATH_INFO": "/metrics"}, start_response)
    app({"PATH_INFO": "/metrics", "HTTP_AUTHORIZATION": "Bearer wrong"}, start_response)
    body = app({"PATH_INFO": "/metrics", "HTTP_AUTHORIZATION": f"Bearer {token}"}, start_response)
    assert statuses == ["401 Unauthorized", "401 Unauthorized", "200 OK"]
    assert isinstance(body[0], bytes)
