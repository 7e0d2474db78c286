"""The transport policy both paths obey, and the in-memory admission counters."""

from __future__ import annotations

import pytest

from chat_gateway.policy import (
    HandshakeLimiter,
    PendingConnections,
    TokenBucket,
    TransportPolicy,
)
from chat_gateway.settings import GatewaySettings
from chat_runtime.settings import load_settings

ENV = {
    "CHAT_JWT_SECRET": "k" * 48,
    "CHAT_JWT_AUDIENCE": "chat",
    "CHAT_JWT_ISSUER": "iss",
}


def policy(**env: str) -> TransportPolicy:
    return TransportPolicy.from_settings(load_settings(GatewaySettings, {**ENV, **env}))


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        ("", None, True),  # not a browser: no Origin header
        ("", "https://app.example", False),  # empty refuses every browser
        ("https://app.example", "https://app.example", True),
        ("https://app.example", "https://evil.example", False),
        ("*", "https://evil.example", True),
    ],
)
def test_origins_mean_the_same_on_both_paths(
    origins: str, origin: str | None, allowed: bool
) -> None:
    p = policy(CHAT_ALLOWED_ORIGINS=origins)
    assert p.origin_allowed(origin) is allowed
    # python-engineio gets the very same rule (a list `[]` would mean "no check").
    check = p.engineio_options()["cors_allowed_origins"]
    assert callable(check)
    assert check(origin) is allowed


def test_one_payload_limit_and_heartbeat_for_both_paths() -> None:
    p = policy(
        CHAT_MAX_PAYLOAD_BYTES="500000", CHAT_PING_INTERVAL_MS="7000", CHAT_PING_TIMEOUT_MS="3000"
    )
    assert p.max_payload == 500_000
    options = p.engineio_options()
    assert options["max_http_buffer_size"] == 500_000
    assert (options["ping_interval"], options["ping_timeout"]) == (7.0, 3.0)
    assert policy().max_payload == 1 << 20


def test_token_bucket_spends_its_burst_then_refills() -> None:
    bucket = TokenBucket(per_s=2, burst=3, stamp=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.5)  # one token back after 0.5 s at 2/s
    assert not bucket.take(100.5)
    assert bucket.full(102.0)


def test_handshakes_are_limited_per_address_and_forgotten_when_idle() -> None:
    limiter = HandshakeLimiter(per_s=1, burst=2)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", 0.0)
    assert limiter.allow("a", 1.0)
    limiter.prune(1.5)
    assert len(limiter) == 1  # "b" has refilled: nothing to remember; "a" has not
    limiter.prune(10.0)
    assert len(limiter) == 0
    assert HandshakeLimiter(per_s=0, burst=0).allow("a")  # 0 = no limit


def test_a_refused_handshake_says_when_to_retry() -> None:
    limiter = HandshakeLimiter(per_s=4, burst=1)
    assert limiter.wait_ms("a", 0.0) == 0
    assert 240 <= limiter.wait_ms("a", 0.0) <= 260  # one token every 250 ms
    assert limiter.wait_ms("a", 0.3) == 0


def test_pending_connections_count_per_address_and_in_total() -> None:
    pending = PendingConnections(total=3, per_address=2)
    assert pending.admit("a")
    assert pending.admit("a")
    assert not pending.admit("a")
    assert pending.admit("b")
    assert not pending.admit("c")  # total reached
    pending.release("a")
    assert pending.of("a") == 1
    assert pending.admit("c")
    pending.release("zzz")  # never admitted: no effect
    assert pending.total == 3


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # Not a trusted proxy: its header is ignored (anyone can send one).
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        # The client may prepend made-up hops; the rightmost untrusted one counts.
        ("10.1.2.3", "1.1.1.1, 198.51.100.1, 10.9.9.9", "198.51.100.1"),
        ("10.1.2.3", "10.0.0.5", "10.0.0.5"),  # only proxies: the leftmost
        ("10.1.2.3", None, "10.1.2.3"),
    ],
)
def test_client_address_believes_only_trusted_proxies(
    peer: str, forwarded: str | None, client: str
) -> None:
    p = policy(CHAT_TRUSTED_PROXIES="10.0.0.0/8")
    assert p.client_address(peer, forwarded) == client


def test_a_trusted_proxy_is_exempt_from_the_per_address_pending_cap() -> None:
    pending = PendingConnections(total=3, per_address=1)
    assert pending.admit("10.0.0.1", per_address=False)
    assert pending.admit("10.0.0.1", per_address=False)
    assert pending.admit("10.0.0.1", per_address=False)
    assert not pending.admit("10.0.0.1", per_address=False)  # the total still holds
