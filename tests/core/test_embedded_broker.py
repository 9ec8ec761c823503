"""The embedded Valkey: a real server, reachable on loopback only, persistent, not evicting."""

from __future__ import annotations

import contextlib
import socket
import subprocess

import pytest

pytestmark = pytest.mark.integration


def non_loopback_addresses() -> set[str]:
    addresses: set[str] = set()
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
        addresses |= {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):
        addresses |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    return {a for a in addresses if not a.startswith("127.")}


def test_embedded_broker_binds_loopback_only_with_aof_and_noeviction(broker):
    if broker.server is None:
        pytest.skip("LIBRARIAN_TEST_REDIS_URL points at an external server; nothing embedded to check")
    client = broker.client()
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


def test_embedded_broker_is_not_reachable_on_other_addresses(broker):
    if broker.server is None:
        pytest.skip("LIBRARIAN_TEST_REDIS_URL points at an external server; nothing embedded to check")
    addresses = non_loopback_addresses()
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            assert sock.connect_ex((address, broker.port)) != 0, f"broker reachable on {address}"
    with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
        pass  # and it is reachable where it should be


def test_embedded_broker_requires_the_password(broker):
    import redis

    if not broker.password:
        pytest.skip("external broker without password")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=broker.port).ping()
