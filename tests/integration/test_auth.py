"""Handshake authentication, origins and health endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chat_testkit.client import ChatClient
from chat_testkit.stack import ALLOWED_ORIGIN, AUDIENCE, ISSUER, Stack
from tests.integration.conftest import extra_gateway


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"key": "not-the-secret"}, id="forged"),
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"aud": "someone-else"}, id="wrong-audience"),
        pytest.param({"iss": "someone-else"}, id="wrong-issuer"),
        pytest.param({"nbf": int(time.time()) + 3600}, id="not-yet-valid"),
    ],
)
async def test_bad_token_is_refused_with_unauthorized(
    stack: Stack, claims: dict[str, object]
) -> None:
    client = ChatClient("intruder")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(stack.gateway_url(0), stack.token("mallory", **claims))
    error = await client.wait_for("connect_error")
    assert error == {"message": "unauthorized", "data": {"code": "UNAUTHORIZED"}}
    assert not client.sio.connected


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _claims(sub: object = "mallory", **more: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 600, **more}


def _unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    """`alg: none`: a header and claims with an empty signature (RFC 7519 section 6)."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _rsa_pem() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


ATTACKER_PRIVATE, ATTACKER_PUBLIC = _rsa_pem()


def _flip_signature(token: str) -> str:
    """The same token with one signature byte changed."""
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 1
    return f"{head}.{body}.{_b64(bytes(raw))}"


async def _polling_connect(url: str, token: str) -> list[str]:
    """The Engine.IO long-polling handshake by hand: OPEN, then CONNECT with the token;
    the packets answering it (the python client spends 8 s finding out a refusal over
    polling)."""
    base = url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as resp:
            sid = json.loads((await resp.text())[1:])["sid"]
        session = f"{base}&sid={sid}"
        async with http.post(session, data="40" + json.dumps({"token": token})) as resp:
            assert resp.status == 200
        async with http.get(session) as resp:
            return (await resp.text()).split("\x1e")


async def _refused_polling(url: str, token: str) -> None:
    packets = await _polling_connect(url, token)
    errors = [json.loads(p[2:]) for p in packets if p.startswith("44")]
    assert errors, packets
    assert errors[0]["message"] == "unauthorized", errors
    assert errors[0]["data"]["code"] == "UNAUTHORIZED", errors
    assert not any(p.startswith("40") for p in packets), packets


async def _refused(url: str, token: str, transports: list[str] | None = None) -> None:
    if transports == ["polling"]:
        await _refused_polling(url, token)
        return
    client = ChatClient("intruder")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, token, transports=transports or ["websocket"])
    error = await client.wait_for("connect_error")
    assert error["message"] == "unauthorized", error
    assert error["data"]["code"] == "UNAUTHORIZED", error
    assert not client.sio.connected
    await client.close()


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: _unsigned(_claims()), id="alg-none"),
        pytest.param(lambda s: _unsigned(_claims(), alg="None"), id="alg-None-case"),
        # A valid HS256 signature with the header rewritten to `none`.
        pytest.param(
            lambda s: ".".join(
                [*_unsigned(_claims()).split(".")[:2], s.token("mallory").split(".")[2]]
            ),
            id="alg-none-with-signature",
        ),
        # HS/RS confusion: an RS256 token of the attacker's own key against an HS256
        # gateway (the header names the algorithm; the gateway pins its own).
        pytest.param(
            lambda s: jwt.encode(_claims(), ATTACKER_PRIVATE, algorithm="RS256"), id="rs256-own-key"
        ),
        pytest.param(
            lambda s: jwt.encode(_claims(), s.secret, algorithm="HS512"), id="hs512-same-secret"
        ),
        pytest.param(
            lambda s: (
                s.token("mallory")[:-3] + ("AAA" if not s.token("m").endswith("AAA") else "BBB")
            ),
            id="bad-signature",
        ),
        pytest.param(lambda s: s.token("mallory", exp=None), id="no-exp"),
        pytest.param(lambda s: s.token("mallory", sub=None), id="no-sub"),
        pytest.param(lambda s: s.token("a.b"), id="sub-with-dot"),
        pytest.param(lambda s: s.token(">"), id="sub-nats-wildcard"),
        pytest.param(lambda s: s.token("*"), id="sub-star"),
        pytest.param(lambda s: s.token("x" * 129), id="sub-too-long"),
        pytest.param(lambda s: s.token("éve"), id="sub-non-ascii"),
        pytest.param(lambda s: s.token("eve\n"), id="sub-newline"),
        pytest.param(lambda s: s.token("mallory", sub=12345), id="sub-number"),
        pytest.param(lambda s: s.token("mallory", sub=["a"]), id="sub-list"),
        pytest.param(
            lambda s: jwt.encode({"sub": "mallory", "exp": int(time.time()) + 600}, s.secret),
            id="no-aud-no-iss",
        ),
        pytest.param(lambda s: "not.a.jwt", id="garbage"),
        pytest.param(lambda s: "", id="empty"),
    ],
)
async def test_forged_tokens_are_refused_at_the_handshake_on_both_transports(
    stack: Stack, forge: Any, transports: list[str]
) -> None:
    await _refused(stack.gateway_url(0), forge(stack), transports)


@pytest.fixture(scope="module")
def rs256_gateway(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, bytes]]:
    """A gateway verifying RS256 with a public key; its URL and the issuer's private key."""
    private, public = _rsa_pem()
    path = tmp_path_factory.mktemp("rs256") / "public.pem"
    path.write_bytes(public)
    with extra_gateway(
        stack,
        "gateway-rs256",
        CHAT_JWT_SECRET="",
        CHAT_JWT_PUBLIC_KEY=str(path),
        CHAT_JWT_ALGORITHM="RS256",
    ) as url:
        yield url, private


async def test_a_valid_token_connects_over_polling_by_hand(stack: Stack) -> None:
    """The control of the polling refusals above: the same handshake with a good token."""
    packets = await _polling_connect(stack.gateway_url(0), stack.token("polly"))
    assert any(p.startswith("40") and '"sid"' in p for p in packets), packets


async def test_rs256_gateway_accepts_its_issuer_and_refuses_key_confusion(
    rs256_gateway: tuple[str, bytes],
) -> None:
    url, private = rs256_gateway
    public_pem = (
        serialization.load_pem_private_key(private, None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    good = ChatClient("issuer")
    await good.connect(url, jwt.encode(_claims("rs-user"), private, algorithm="RS256"))
    assert (await good.call("groups:list", {}))["status"] == "ok"
    await good.close()
    # The classic confusion: HS256 "signed" with the public key as the HMAC secret.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    await _refused(url, f"{header}.{body}.{_b64(mac)}")
    # Another RSA key, and `none`.
    await _refused(url, jwt.encode(_claims(), ATTACKER_PRIVATE, algorithm="RS256"))
    await _refused(url, _unsigned(_claims()))


async def test_missing_token_is_refused(stack: Stack) -> None:
    client = ChatClient("anonymous")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(stack.gateway_url(1), transports=["websocket"], wait_timeout=5)
    # The python client reports the refusal through its connect_error event as well.
    error = await client.wait_for("connect_error")
    assert error["message"] == "unauthorized"


async def test_origin_outside_the_allow_list_is_refused(stack: Stack) -> None:
    client = ChatClient("evil-origin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            stack.gateway_url(0), stack.token("eve"), headers={"Origin": "https://evil.example"}
        )
    allowed = ChatClient("good-origin")
    await allowed.connect(
        stack.gateway_url(0), stack.token("eve"), headers={"Origin": ALLOWED_ORIGIN}
    )
    assert allowed.sio.connected
    await allowed.close()


async def test_origin_outside_the_allow_list_is_refused_on_long_polling(stack: Stack) -> None:
    url = stack.gateway_url(0) + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status in (400, 403), resp.status
        async with http.get(url, headers={"Origin": ALLOWED_ORIGIN}) as resp:
            assert resp.status == 200


async def test_health_and_readiness(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        for index in (0, 1):
            async with http.get(stack.gateway_url(index) + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(stack.gateway_url(index) + "/readyz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"nats": True, "redis": True}
