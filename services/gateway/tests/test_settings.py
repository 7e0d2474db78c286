"""Settings: a missing or malformed variable stops the process, naming it."""

from __future__ import annotations

import pytest

from chat_gateway.settings import GatewaySettings
from chat_runtime.settings import SettingsError, load_settings


def test_defaults_with_a_secret() -> None:
    s = load_settings(GatewaySettings, {"CHAT_JWT_SECRET": "x", "CHAT_ALLOWED_ORIGINS": "a, b"})
    assert s.allowed_origins == ["a", "b"]
    assert s.gateway_port == 8080


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "CHAT_JWT_SECRET"),
        ({"CHAT_JWT_SECRET": "x", "CHAT_GATEWAY_PORT": "eighty"}, "CHAT_GATEWAY_PORT"),
        ({"CHAT_JWT_SECRET": "x", "CHAT_STORE": "postgres"}, "CHAT_STORE"),
        ({"CHAT_JWT_SECRET": "x", "CHAT_STORE": "mongo"}, "CHAT_MONGODB_URL"),
        ({"CHAT_JWT_PUBLIC_KEY": "pem"}, "CHAT_JWT_ALGORITHM"),
    ],
)
def test_bad_configuration_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(GatewaySettings, env)


#: Passes any secret policy: long, random-looking, with audience and issuer.
_JWT = {
    "CHAT_JWT_SECRET": "k3V9qX2mZ7pL4wR8tY1uB6nC0dF5gH-jA2sE9",
    "CHAT_JWT_AUDIENCE": "chat",
    "CHAT_JWT_ISSUER": "chat-test",
}


def test_optional_services_default_to_none_and_accept_calls_and_media() -> None:
    assert load_settings(GatewaySettings, _JWT).optional_services == []
    both = load_settings(GatewaySettings, {**_JWT, "CHAT_OPTIONAL_SERVICES": "calls, media"})
    assert both.optional_services == ["calls", "media"]


@pytest.mark.parametrize("value", ["messages", "call", "calls,bogus"])
def test_optional_services_outside_the_list_are_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="CHAT_OPTIONAL_SERVICES"):
        load_settings(GatewaySettings, {**_JWT, "CHAT_OPTIONAL_SERVICES": value})


def test_protocol_defaults_come_from_the_contracts() -> None:
    s = load_settings(GatewaySettings, _JWT)
    assert (s.rate_send_per_s, s.rate_send_burst, s.rate_other_per_min) == (5.0, 10, 60.0)
    assert (s.typing_expiry_ms, s.presence_grace_ms, s.ack_timeout_ms) == (10_000, 10_000, 5_000)
