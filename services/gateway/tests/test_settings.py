"""Settings: a missing or malformed variable stops the process, naming it."""

from __future__ import annotations

import importlib.util
import re
import secrets
import sys
from pathlib import Path

import pytest

from chat_gateway.settings import GatewaySettings
from chat_runtime.settings import SettingsError, load_settings

SECRET = "k" * 48
#: What a production gateway must be given besides a key.
CLAIMS = {"CHAT_JWT_AUDIENCE": "chat", "CHAT_JWT_ISSUER": "https://auth.example.com/"}
VALID = {"CHAT_JWT_SECRET": SECRET, **CLAIMS}


def test_defaults_with_a_secret() -> None:
    s = load_settings(GatewaySettings, {**VALID, "CHAT_ALLOWED_ORIGINS": "a, b"})
    assert s.allowed_origins == ["a", "b"]
    assert s.gateway_port == 8080
    assert s.max_sockets_per_user == 50
    assert not s.dev_mode


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "CHAT_JWT_SECRET"),
        ({**VALID, "CHAT_GATEWAY_PORT": "eighty"}, "CHAT_GATEWAY_PORT"),
        ({**VALID, "CHAT_STORE": "postgres"}, "CHAT_STORE"),
        ({**VALID, "CHAT_NATS_USER": "gateway"}, "CHAT_NATS_PASSWORD"),
        ({"CHAT_JWT_PUBLIC_KEY": "pem", **CLAIMS}, "CHAT_JWT_ALGORITHM"),
        # Outside dev mode the audience and the issuer are required.
        ({"CHAT_JWT_SECRET": SECRET}, "CHAT_JWT_AUDIENCE"),
        ({"CHAT_JWT_SECRET": SECRET, "CHAT_JWT_AUDIENCE": "chat"}, "CHAT_JWT_ISSUER"),
        # HS256 with fewer than 32 bytes of key is guessable offline.
        ({**VALID, "CHAT_JWT_SECRET": "x" * 31}, "CHAT_JWT_SECRET is too short"),
        # The value deploy/k8s/secret.yaml ships (40 bytes, so only the marker catches it).
        (
            {**VALID, "CHAT_JWT_SECRET": "REPLACE-ME-with-at-least-32-random-bytes"},
            "CHAT_JWT_SECRET is a placeholder",
        ),
        # A secret next to a public key: every RS256 token would be refused.
        (
            {**VALID, "CHAT_JWT_PUBLIC_KEY": "pem", "CHAT_JWT_ALGORITHM": "RS256"},
            "CHAT_JWT_SECRET and CHAT_JWT_PUBLIC_KEY",
        ),
        ({**VALID, "CHAT_MAX_FRAME_BYTES": "10"}, "CHAT_MAX_FRAME_BYTES"),
        ({**VALID, "CHAT_REDIS_URL": "http://x"}, "CHAT_REDIS_URL"),
        ({**VALID, "CHAT_TRUSTED_PROXIES": "10.0.0.0/8, ingress"}, "CHAT_TRUSTED_PROXIES"),
        (
            {
                **CLAIMS,
                "CHAT_JWT_PUBLIC_KEY": "pem",
                "CHAT_JWT_ALGORITHM": "RS256",
                "CHAT_DEV_MODE": "1",
            },
            "CHAT_DEV_MODE",
        ),
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


def test_dev_mode_accepts_tokens_without_audience_and_issuer() -> None:
    s = load_settings(GatewaySettings, {"CHAT_JWT_SECRET": SECRET, "CHAT_DEV_MODE": "true"})
    assert s.dev_mode
    assert s.jwt_audience == ""


def test_the_k8s_placeholder_is_refused_even_in_dev_mode() -> None:
    env = {"CHAT_JWT_SECRET": "REPLACE-ME-with-at-least-32-random-bytes", "CHAT_DEV_MODE": "1"}
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings(GatewaySettings, env)


def test_the_dev_stack_environment_is_a_valid_configuration() -> None:
    # `./taskw up` runs gateways with DEV_ENV plus a secret it generates.
    path = Path(__file__).resolve().parents[3] / "scripts" / "devstack.py"
    spec = importlib.util.spec_from_file_location("devstack_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    devstack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = devstack  # its dataclasses look themselves up there
    try:
        spec.loader.exec_module(devstack)
    finally:
        del sys.modules[spec.name]
    env = {**devstack.DEV_ENV, "CHAT_JWT_SECRET": secrets.token_urlsafe(48)}
    s = load_settings(GatewaySettings, env)
    assert s.dev_mode
    assert s.jwt_audience
    assert s.jwt_issuer


def _k8s_values(name: str) -> dict[str, str]:
    """The `CHAT_*=value` lines of an env file in deploy/k8s."""
    path = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / name
    return dict(re.findall(r"^(CHAT_[A-Z0-9_]+)=(.*)$", path.read_text(), re.M))


def test_the_k8s_config_is_valid_and_its_secret_placeholder_is_not() -> None:
    config = _k8s_values("base/config.env")
    example = _k8s_values("overlays/dev/secrets.env.example")
    real = {"CHAT_JWT_SECRET": secrets.token_urlsafe(48)}
    s = load_settings(GatewaySettings, {**config, **real})
    assert s.trusted_proxies
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings(GatewaySettings, {**config, "CHAT_JWT_SECRET": example["CHAT_JWT_SECRET"]})


def test_the_gateway_needs_no_store_url() -> None:
    """One ConfigMap says CHAT_STORE=mongo for every pod; only workers get the URL."""
    s = load_settings(GatewaySettings, {**VALID, "CHAT_STORE": "mongo"})
    assert s.mongodb_url == ""
