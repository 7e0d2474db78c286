"""Calls settings: defaults are the protocol's rules; TURN without its secret is refused."""

from __future__ import annotations

import pytest

from chat_calls.domain import Timing
from chat_calls.settings import CallsSettings
from chat_runtime.settings import SettingsError, load_settings


def test_defaults_are_the_protocol_rules() -> None:
    settings = load_settings(CallsSettings, {})
    assert settings.timing == Timing(ring_ms=60_000, disconnect_ms=15_000, max_ms=14_400_000)
    assert settings.ice.servers("u", 0) == []


def test_turn_settings_build_the_ice_servers() -> None:
    settings = load_settings(
        CallsSettings,
        {
            "CHAT_STUN_URLS": "stun:a.example:3478",
            "CHAT_TURN_URLS": "turn:a.example:3478?transport=udp, turns:a.example:5349",
            "CHAT_TURN_SECRET": "s",
            "CHAT_TURN_TTL_S": "60",
        },
    )
    stun, turn = settings.ice.servers("u", 1_000)
    assert stun.urls == ["stun:a.example:3478"]
    assert turn.urls == ["turn:a.example:3478?transport=udp", "turns:a.example:5349"]
    assert turn.username == "1060:u"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHAT_TURN_URLS": "turn:a.example:3478"}, "CHAT_TURN_SECRET"),
        ({"CHAT_CALL_RING_TIMEOUT_MS": "0"}, "CHAT_CALL_"),
        ({"CHAT_CALL_SWEEP_INTERVAL_MS": "soon"}, "CHAT_CALL_SWEEP_INTERVAL_MS"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(CallsSettings, env)
