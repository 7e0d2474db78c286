"""Handshake authentication, origins and health endpoints."""

from __future__ import annotations

import time

import aiohttp
import pytest
import socketio

from chat_testkit.client import ChatClient
from chat_testkit.stack import ALLOWED_ORIGIN, Stack


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


async def test_health_and_readiness(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        for index in (0, 1):
            async with http.get(stack.gateway_url(index) + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(stack.gateway_url(index) + "/readyz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"nats": True, "redis": True}
