"""Shared settings: the store and NATS credential rules every worker gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_runtime.redis_auth import with_login
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


def test_the_redis_login_goes_into_the_url_percent_encoded() -> None:
    base = "rediss://old:oldpw@redis.example:6380/0?ssl_ca_certs=/etc/ca.pem"
    url = with_login(base, "chat", "p@ss:w/rd")
    assert url == "rediss://chat:p%40ss%3Aw%2Frd@redis.example:6380/0?ssl_ca_certs=/etc/ca.pem"
    assert with_login("redis://r:6379/0") == "redis://r:6379/0"
    assert with_login("unix:///run/redis.sock?db=2", "", "pw") == "unix://:pw@/run/redis.sock?db=2"


def test_a_setting_can_come_from_a_mounted_file(tmp_path: Path) -> None:
    secret = tmp_path / "mongodb-url"
    secret.write_text("mongodb://chat:pw@db:27017/?replicaSet=rs0\n")
    env = {"CHAT_STORE": "mongo", "CHAT_MONGODB_URL_FILE": str(secret)}
    assert load_settings(BaseSettings, env).mongodb_url.endswith("replicaSet=rs0")
    # The variable itself wins over its file.
    direct = load_settings(BaseSettings, {**env, "CHAT_MONGODB_URL": "mongodb://x/"})
    assert direct.mongodb_url == "mongodb://x/"
    with pytest.raises(SettingsError, match="CHAT_MONGODB_URL_FILE"):
        load_settings(BaseSettings, {**env, "CHAT_MONGODB_URL_FILE": str(tmp_path / "no")})
