"""API tokens (API_TOKENS): 401 without one, the owner acts as itself only, nothing leaks the token."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid

import httpx
import pytest
from pydantic import ValidationError

from app.core.config import Settings
from tests.conftest import TMP, stack_database_url, stack_env, start_api
from tests.utils.processes import ROOT, cli

pytestmark = pytest.mark.integration

ALICE, BOB = f"alice-{secrets.token_hex(3)}", f"bob-{secrets.token_hex(3)}"
ALICE_TOKEN, BOB_TOKEN = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
WRONG_TOKEN = secrets.token_urlsafe(24)
MISSING = "00000000-0000-0000-0000-000000000000"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(base: str, headers: dict[str, str] | None = None, **data: str) -> httpx.Response:
    files = {"file": ("m.3dm", b"not really a model")}
    return httpx.post(f"{base}/api/v1/parts", files=files, data=data or None, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def stack(broker):
    env = stack_env(
        REDIS_URL=broker.db_url(5),  # its own queues: nothing consumes what this module submits
        DATABASE_URL=stack_database_url(TMP / "auth.db"),
        API_TOKENS=f"{ALICE}:{ALICE_TOKEN}, {BOB}:{BOB_TOKEN}",
        LOG_LEVEL="DEBUG",
    )
    api, base = start_api("api-auth", env=env)
    answers: list[str] = []
    try:
        yield api, base, env, answers
    finally:
        api.stop()


def call(stack, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    _, base, _, answers = stack
    headers = {**kwargs.pop("headers", {}), **(bearer(token) if token else {})}
    answer = httpx.request(method, f"{base}{path}", headers=headers, timeout=10, **kwargs)
    answers.append(f"{answer.headers}\n{answer.text}")
    return answer


ENDPOINTS = [
    ("GET", "/api/v1/parts"),
    ("GET", f"/api/v1/parts/{MISSING}"),
    ("POST", "/api/v1/tasks/test"),
    ("GET", f"/api/v1/tasks/{MISSING}"),
    ("GET", "/api/v1/rulesets"),
    ("GET", f"/api/v1/batches/{MISSING}"),
    ("POST", f"/api/v1/agents/{ALICE}/pause"),
    ("GET", f"/api/v1/agents/{ALICE}/events"),
]


@pytest.mark.parametrize(
    "headers",
    [{}, bearer(WRONG_TOKEN), bearer(ALICE_TOKEN[:-1]), {"Authorization": f"Basic {ALICE_TOKEN}"}],
    ids=["none", "wrong", "truncated", "basic"],
)
def test_no_or_a_wrong_token_answers_401(stack, headers):
    for method, path in ENDPOINTS:
        answer = call(stack, method, path, headers=headers)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json() == {"detail": "missing or wrong bearer token"}
        assert answer.headers["www-authenticate"] == "Bearer"
    assert upload(stack[1], headers).status_code == 401  # refused before the body is read
    assert not list((TMP / "storage" / ".incoming").glob("*.part"))


def test_a_token_is_accepted_and_its_owner_recorded(stack):
    assert call(stack, "GET", "/api/v1/parts", ALICE_TOKEN).status_code == 200
    assert call(stack, "GET", "/api/v1/rulesets", BOB_TOKEN).status_code == 200
    assert call(stack, "POST", "/api/v1/tasks/test", ALICE_TOKEN).status_code == 202
    assert call(stack, "GET", f"/api/v1/parts/{MISSING}", ALICE_TOKEN).status_code == 404
    submitted = upload(stack[1], bearer(ALICE_TOKEN))
    assert submitted.status_code == 202, submitted.text
    part = call(stack, "GET", f"/api/v1/parts/{submitted.json()['part_id']}", BOB_TOKEN)
    assert part.status_code == 200 and part.json()["owner"] == ALICE  # reads are open to every token
    named = upload(stack[1], bearer(BOB_TOKEN), owner=BOB)  # naming oneself is fine
    assert named.status_code == 202, named.text
    assert call(stack, "GET", f"/api/v1/parts/{named.json()['part_id']}", BOB_TOKEN).json()["owner"] == BOB


def test_a_token_acts_on_its_own_brake_only(stack):
    assert call(stack, "POST", f"/api/v1/agents/{ALICE}/pause", ALICE_TOKEN).json()["paused"] is True
    assert call(stack, "GET", f"/api/v1/agents/{ALICE}", ALICE_TOKEN).status_code == 200
    for method, path in [
        ("POST", f"/api/v1/agents/{ALICE}/resume"),
        ("POST", f"/api/v1/agents/{ALICE}/pause"),
        ("GET", f"/api/v1/agents/{ALICE}"),
        ("GET", f"/api/v1/agents/{ALICE}/events"),
    ]:
        answer = call(stack, method, path, BOB_TOKEN)
        assert answer.status_code == 403, (method, path, answer.text)
        assert BOB in answer.json()["detail"]
    assert call(stack, "GET", f"/api/v1/agents/{ALICE}", ALICE_TOKEN).json()["paused"] is True  # bob changed nothing
    assert call(stack, "POST", f"/api/v1/agents/{ALICE}/resume", ALICE_TOKEN).json()["paused"] is False


def test_submitting_for_another_owner_answers_403(stack):
    base = stack[1]
    assert upload(base, bearer(ALICE_TOKEN), owner=BOB).status_code == 403
    assert upload(base, {**bearer(ALICE_TOKEN), "X-Librarian-User": BOB}).status_code == 403
    bobs = upload(base, bearer(BOB_TOKEN)).json()["part_id"]
    answer = call(stack, "POST", f"/api/v1/parts/{bobs}/revalidate", ALICE_TOKEN)
    assert answer.status_code == 403 and "another owner" in answer.json()["detail"]
    assert call(stack, "POST", f"/api/v1/parts/{bobs}/revalidate", BOB_TOKEN).status_code == 409  # still queued
    files = [("files", ("a.3dm", b"x")), ("files", ("b.3dm", b"y"))]
    others = call(stack, "POST", "/api/v1/batches", ALICE_TOKEN, files=files, data={"owner": BOB})
    assert others.status_code == 403, others.text
    batch = call(stack, "POST", "/api/v1/batches", ALICE_TOKEN, files=files)
    assert batch.status_code == 202, batch.text
    assert call(stack, "GET", f"/api/v1/batches/{batch.json()['batch_id']}", BOB_TOKEN).json()["owner"] == ALICE
    retried = call(stack, "POST", f"/api/v1/batches/{batch.json()['batch_id']}/retry", BOB_TOKEN)
    assert retried.status_code == 403 and "another owner" in retried.json()["detail"]
    assert call(stack, "POST", f"/api/v1/batches/{batch.json()['batch_id']}/retry", ALICE_TOKEN).status_code == 202
    demo = call(stack, "POST", "/api/v1/tasks/test", ALICE_TOKEN, params={"owner": BOB})
    assert demo.status_code == 403, demo.text
    alices = call(stack, "POST", "/api/v1/tasks/test", ALICE_TOKEN, params={"owner": ALICE})
    assert alices.status_code == 202
    stop = call(stack, "DELETE", f"/api/v1/tasks/{alices.json()['task_id']}", BOB_TOKEN)
    assert stop.status_code == 403 and "another owner" in stop.json()["detail"]
    assert call(stack, "DELETE", f"/api/v1/tasks/{alices.json()['task_id']}", ALICE_TOKEN).status_code == 200


def test_health_metrics_and_docs_need_no_token(stack):
    assert call(stack, "GET", "/health").status_code in (200, 503)  # no worker here: down, not 401
    assert call(stack, "GET", "/metrics").status_code == 200
    assert call(stack, "GET", "/docs").status_code == 200
    schema = call(stack, "GET", "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["APIToken"]["description"],
    }
    assert schema["paths"]["/api/v1/parts"]["get"]["security"] == [{"APIToken": []}]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_librarian_submit_sends_the_token(stack, tmp_path):
    _, base, env, _ = stack
    model = tmp_path / "m.3dm"
    model.write_bytes(b"not really a model")
    argv = cli("submit", str(model), "--api", base, "--format", "json")
    with_token = subprocess.run(
        argv, env={**env, "LIBRARIAN_TOKEN": ALICE_TOKEN}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert with_token.returncode == 0, with_token.stdout + with_token.stderr
    assert json.loads(with_token.stdout)[0]["status"] == "queued"
    # "--token=…": a url-safe token may begin with "-", which argparse would read as an option
    flag = subprocess.run(
        [*argv, f"--token={BOB_TOKEN}"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert flag.returncode == 0, flag.stdout + flag.stderr
    without = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert without.returncode == 1
    assert "HTTP 401" in json.loads(without.stdout)[0]["error"]


def test_tokens_never_reach_logs_or_answers(stack):
    api, _, _, answers = stack
    call(stack, "GET", f"/api/v1/parts/{uuid.uuid4()}", ALICE_TOKEN)
    call(stack, "GET", "/api/v1/parts/not-a-uuid", ALICE_TOKEN)  # a 422 echoing the input
    call(stack, "GET", "/api/v1/parts", WRONG_TOKEN)
    api.wait_for(r'"path": "/api/v1/parts"', timeout=5)
    output = api.output()
    assert '"logger": "librarian.api.access"' in output  # the process did log those requests
    assert len(answers) > 20
    for token in (ALICE_TOKEN, BOB_TOKEN, WRONG_TOKEN):
        assert token not in output
        assert not [a for a in answers if token in a]


# -- settings -------------------------------------------------------------------------------------


def settings(**values: str | bool) -> Settings:
    return Settings(FLOWER_PASSWORD=secrets.token_hex(12), _env_file=None, **values)  # type: ignore[arg-type]


def test_production_needs_tokens_or_an_explicit_anonymous_api():
    with pytest.raises(ValidationError, match="API_TOKENS is empty"):
        settings(ENVIRONMENT="production")
    assert settings(ENVIRONMENT="production", ALLOW_ANONYMOUS=True).api_tokens == ()
    assert settings(ENVIRONMENT="production", API_TOKENS=f"ci:{ALICE_TOKEN}").api_tokens == ((ALICE_TOKEN, "ci"),)
    assert settings(ENVIRONMENT="development").api_tokens == ()
    assert settings(ENVIRONMENT="test").api_tokens == ()


def test_a_refused_production_api_says_why_in_one_line():
    env = stack_env(ENVIRONMENT="production")
    result = subprocess.run(cli("api"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "API_TOKENS is empty" in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ci:changethis", "placeholder"),
        ("ci:short", "shorter than 16"),
        (f"ci:{ALICE_TOKEN},ops:{ALICE_TOKEN}", "the same token"),
        (f"{ALICE_TOKEN}", "not owner:token"),
        (f"bad owner:{ALICE_TOKEN}", "not owner:token"),
        (f"ci:{ALICE_TOKEN[:8]} {ALICE_TOKEN[8:]}", "without spaces"),
    ],
)
def test_bad_tokens_are_refused_without_echoing_them(value, reason):
    with pytest.raises(ValidationError) as refused:
        settings(ENVIRONMENT="production", API_TOKENS=value)
    assert reason in str(refused.value)
    assert ALICE_TOKEN[:8] not in str(refused.value) and "changethis" not in str(refused.value)


def test_development_takes_short_and_placeholder_tokens_and_hides_them():
    loaded = settings(ENVIRONMENT="development", API_TOKENS="alice:tok1, bob:changethis")
    assert loaded.api_tokens == (("tok1", "alice"), ("changethis", "bob"))
    assert "tok1" not in repr(loaded) and "tok1" not in loaded.model_dump_json()
