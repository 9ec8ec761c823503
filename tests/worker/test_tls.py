"""rediss:// URLs get TLS with verified certificates, for the broker and the result backend.

No TLS server runs here: the check is on the connection parameters Celery and kombu hand to
redis-py, in a fresh process whose settings name a rediss:// URL (settings are read at import).
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.utils.processes import ROOT

PROBE = """
import ssl, redis
from app.worker.celery_app import celery_app
connection = celery_app.connection_for_write()
print(connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED})
params = celery_app.backend.connparams
print(params.get("connection_class") is redis.SSLConnection, params.get("ssl_cert_reqs") == ssl.CERT_REQUIRED)
"""


def probe(url: str) -> list[str]:
    env = {
        "REDIS_URL": url,
        "PATH": "/usr/bin:/bin",
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        "VAR_DIR": os.environ["VAR_DIR"],
    }  # the session's, set by tests/conftest.py
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_rediss_url_gets_verified_tls_for_broker_and_backend() -> None:
    assert probe("rediss://:secret@redis.example:6380/0") == ["True", "True", "True"]


def test_a_redis_url_stays_plain() -> None:
    assert probe("redis://:secret@127.0.0.1:6379/0") == ["False", "False", "False"]
