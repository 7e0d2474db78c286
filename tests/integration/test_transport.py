"""The gateway's WebSocket path at the wire: Engine.IO handshake, heartbeat, deflate, errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
import pytest_asyncio

from chat_testkit.stack import Stack
from tests.integration.conftest import extra_gateway


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def socketio_connect(ws: aiohttp.ClientWebSocketResponse, token: str) -> str:
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0")
    handshake = json.loads(opened[1:])
    assert handshake["upgrades"] == []
    await ws.send_str("40" + json.dumps({"token": token}))
    connected = await ws.receive_str(timeout=5)
    assert connected.startswith("40"), connected
    sid: str = json.loads(connected[2:])["sid"]
    return sid


async def test_raw_engineio_session_with_acks(
    stack: Stack, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    async with http.ws_connect(ws_url(stack.gateway_url(0))) as ws:
        await socketio_connect(ws, stack.token(uid("raw")))
        await ws.send_str('427["groups:list",{}]')
        assert await ws.receive_str(timeout=5) == '437[{"status":"ok","groups":[]}]'
        # An event packet that is not a JSON array still gets an ack, not a crash.
        await ws.send_str("428{not json")
        ack = json.loads((await ws.receive_str(timeout=5))[3:])[0]
        assert ack["code"] == "VALIDATION_ERROR"
        # Other namespaces are refused; the default one keeps working.
        await ws.send_str("40/admin,{}")
        assert await ws.receive_str(timeout=5) == '44/admin,{"message":"Invalid namespace"}'
        await ws.send_str('429["groups:list"]')
        assert (await ws.receive_str(timeout=5)).startswith("439[")


async def test_large_frames_are_deflated_when_negotiated(
    stack: Stack, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    async with (
        http.ws_connect(ws_url(stack.gateway_url(0)), compress=15) as deflating,
        http.ws_connect(ws_url(stack.gateway_url(1)), compress=0) as plain,
    ):
        assert "permessage-deflate" in deflating._response.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in plain._response.headers
        await socketio_connect(deflating, stack.token(alice))
        await socketio_connect(plain, stack.token(bob))
        content = "lorem ipsum " * 400  # 4.8 KB: above the 1 KiB threshold
        send = {"clientMessageId": "big", "targetUserId": bob, "content": content}
        await deflating.send_str("421" + json.dumps(["message:send", send]))
        ack = json.loads((await deflating.receive_str(timeout=5))[3:])[0]
        assert ack["status"] == "ok", ack
        event = await plain.receive_str(timeout=5)
        assert json.loads(event[2:])[1]["content"] == content
        # The reply travels compressed to the deflating client and arrives intact.
        await plain.send_str(
            "42"
            + json.dumps(
                ["message:send", {**send, "clientMessageId": "big2", "targetUserId": alice}]
            )
        )
        event = await deflating.receive_str(timeout=5)
        assert json.loads(event[2:])[1]["content"] == content


@pytest.fixture(scope="module")
def quick_ping_gateway(stack: Stack) -> Iterator[str]:
    """A gateway with a 300 ms heartbeat, to see dead clients dropped quickly."""
    with extra_gateway(
        stack, "gateway-ping", CHAT_PING_INTERVAL_MS="300", CHAT_PING_TIMEOUT_MS="300"
    ) as url:
        yield url


async def test_heartbeat_keeps_live_clients_and_drops_silent_ones(
    stack: Stack, quick_ping_gateway: str, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    async with (
        http.ws_connect(ws_url(quick_ping_gateway)) as live,
        http.ws_connect(ws_url(quick_ping_gateway)) as silent,
    ):
        await socketio_connect(live, stack.token(uid("live")))
        await socketio_connect(silent, stack.token(uid("silent")))
        started = time.monotonic()
        pings = 0
        while time.monotonic() - started < 2.5:
            msg = await live.receive_str(timeout=3)
            if msg == "2":
                pings += 1
                await live.send_str("3")
        assert pings >= 3
        # The silent client never answered: it was closed, the live one was not.
        closed = await silent.receive(timeout=3)
        while closed.type == aiohttp.WSMsgType.TEXT:
            closed = await silent.receive(timeout=3)
        assert closed.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        )
        assert not live.closed


async def test_binary_frames_and_bad_upgrades_are_refused(
    stack: Stack, http: aiohttp.ClientSession, uid: Callable[[str], str]
) -> None:
    async with http.ws_connect(ws_url(stack.gateway_url(0))) as ws:
        await socketio_connect(ws, stack.token(uid("bin")))
        await ws.send_bytes(b"\x01\x02")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == 1003
    bad = ws_url(stack.gateway_url(0)).replace("EIO=4", "EIO=3")
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(bad)
    assert err.value.status == 400


async def test_gateway_survives_garbage_and_half_requests(
    stack: Stack, uid: Callable[[str], str]
) -> None:
    port = int(stack.gateway_url(0).rsplit(":", 1)[1])
    for junk in (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n"):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(junk)
        await writer.drain()
        writer.close()
    async with aiohttp.ClientSession() as http, http.get(stack.gateway_url(0) + "/healthz") as resp:
        assert resp.status == 200
