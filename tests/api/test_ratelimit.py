"""Rate limits: one budget per token owner, else per client address (X-Forwarded-For from trusted
proxies only), and separate budgets for single uploads and batches.

A request that is not multipart passes the limiter, then answers 415: a cheap way to spend budget.
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.conftest import TMP, stack_database_url, stack_env, start_api

pytestmark = pytest.mark.integration

ALICE_TOKEN, BOB_TOKEN = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
UPLOADS, BATCHES = 3, 2
PROXY, OTHER = "127.0.0.2", "127.0.0.1"  # the anonymous API trusts PROXY only (not the default)


@pytest.fixture(scope="module")
def apis(broker):
    common = {
        "REDIS_URL": broker.db_url(6),
        "DATABASE_URL": stack_database_url(TMP / "ratelimit.db"),
        "RATE_LIMIT_UPLOADS": f"{UPLOADS}/minute",
        "RATE_LIMIT_BATCHES": f"{BATCHES}/minute",
    }
    with_tokens, base_tokens = start_api(
        "api-rl-tokens", env=stack_env(**common, API_TOKENS=f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}")
    )
    try:
        anonymous, base_anonymous = start_api("api-rl-anonymous", env=stack_env(**common, FORWARDED_ALLOW_IPS=PROXY))
        try:
            yield base_tokens, base_anonymous
        finally:
            anonymous.stop()
    finally:
        with_tokens.stop()


def spend(
    base: str,
    path: str = "/api/v1/parts",
    *,
    token: str | None = None,
    forwarded: str | None = None,
    source: str = OTHER,
) -> httpx.Response:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.post(f"{base}{path}", content=b"not multipart", headers=headers)


def codes(answers: list[httpx.Response]) -> list[int]:
    return [a.status_code for a in answers]


def test_each_token_owner_has_its_own_budget(apis):
    base, _ = apis
    alice = [spend(base, token=ALICE_TOKEN, forwarded=f"203.0.113.{n}") for n in range(UPLOADS + 1)]
    assert codes(alice) == [415] * UPLOADS + [429]  # another forwarded address changes nothing: the key is alice
    limited = alice[-1]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["detail"].startswith("too many requests")
    assert spend(base, token=BOB_TOKEN).status_code == 415  # bob's budget is whole
    assert spend(base, token=secrets.token_urlsafe(24)).status_code == 401  # auth first, no budget spent


def test_uploads_and_batches_have_separate_budgets(apis):
    base, _ = apis
    token = BOB_TOKEN
    assert codes([spend(base, "/api/v1/batches", token=token) for _ in range(BATCHES + 1)]) == [415] * BATCHES + [429]
    # bob spent one upload above; his batches being over their limit leaves his uploads alone
    assert codes([spend(base, token=token) for _ in range(UPLOADS)]) == [415] * (UPLOADS - 1) + [429]


def test_forwarded_for_is_believed_from_a_trusted_proxy(apis):
    _, base = apis
    first = [spend(base, forwarded="198.51.100.1", source=PROXY) for _ in range(UPLOADS + 1)]
    assert codes(first) == [415] * UPLOADS + [429]
    assert spend(base, forwarded="198.51.100.2", source=PROXY).status_code == 415  # another client behind it
    # the proxy appends the address it saw: the client's own X-Forwarded-For claim does not count
    assert spend(base, forwarded="198.51.100.2, 198.51.100.1", source=PROXY).status_code == 429


def test_forwarded_for_is_ignored_from_any_other_peer(apis):
    _, base = apis
    spoofed = [spend(base, forwarded=f"192.0.2.{n}", source=OTHER) for n in range(UPLOADS + 1)]
    assert codes(spoofed) == [415] * UPLOADS + [429]  # one budget: OTHER's, whatever it claims
    assert spend(base, forwarded="198.51.100.9", source=PROXY).status_code == 415  # the proxy's clients are apart
