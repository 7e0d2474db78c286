"""Shared settings: the store and NATS credential rules every worker gets."""

from __future__ import annotations

import pytest

from chat_runtime.settings import BaseSettings, SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CHAT_STORE": "mongo"}, "CHAT_MONGODB_URL"),
        ({"CHAT_NATS_PASSWORD": "pw"}, "CHAT_NATS_USER"),
        ({"CHAT_NATS_USER": "u", "CHAT_NATS_PASSWORD": "p", "CHAT_NATS_CREDS": "f"}, "CREDS"),
        ({"CHAT_NATS_TLS_CERT": "cert.pem"}, "CHAT_NATS_TLS_KEY"),
        ({"CHAT_LOG_FORMAT": "xml"}, "CHAT_LOG_FORMAT"),
        ({"CHAT_HEALTH_PORT": "ninety"}, "CHAT_HEALTH_PORT"),
    ],
)
def test_bad_configuration_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(BaseSettings, env)


def test_the_ops_port_is_off_unless_set() -> None:
    assert load_settings(BaseSettings, {}).health_port is None
    assert load_settings(BaseSettings, {"CHAT_HEALTH_PORT": "0"}).health_port == 0
