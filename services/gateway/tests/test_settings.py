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
