"""TURN REST credentials (what coturn's use-auth-secret checks) and the iceServers list."""

from __future__ import annotations

import base64
import hashlib
import hmac

from chat_calls.turn import IceConfig, credentials
from chat_contracts.server import IceServer


def test_credentials_follow_the_turn_rest_scheme() -> None:
    username, password = credentials("s3cret", "user-1", now_s=1_700_000_000, ttl_s=3_600)
    assert username == "1700003600:user-1"
    expected = hmac.new(b"s3cret", b"1700003600:user-1", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected
    # Computed independently: printf '1700003600:user-1' | openssl dgst -sha1 -hmac s3cret
    # -binary | base64
    assert password == "D/3A4z6ImTw+jB+qL+7PTELkgCk="


def test_servers_lists_stun_then_turn_with_credentials() -> None:
    config = IceConfig(
        stun_urls=["stun:stun.example.org:3478"],
        turn_urls=["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
        turn_secret="k",
        ttl_s=60,
    )
    stun, turn = config.servers("u", now_s=100)
    assert stun == IceServer(urls=["stun:stun.example.org:3478"])
    assert turn.urls == config.turn_urls
    assert (turn.username, turn.credential) == ("160:u", credentials("k", "u", 100, 60)[1])


def test_no_servers_configured_means_an_empty_list() -> None:
    assert IceConfig().servers("u", 1) == []
    assert IceConfig(turn_urls=["turn:x"]).servers("u", 1) == []
