"""The gateway edge against real servers (issue 6): admission, identity over time,
malformed input, order, limits, one transport policy on both paths, a hung Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import socketio
from redis.asyncio import Redis

from chat_testkit.client import ChatClient
from chat_testkit.servers import ServiceProcess
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, cmid, extra_gateway, make_group

#: The edge gateway's limits: small, so each is reached in a few requests.
MAX_PAYLOAD = 64 * 1024
MAX_FRAME = 128 * 1024
REFUSED_PER_MIN = 10
REDIS_TIMEOUT_MS = 300
CONNECT_TIMEOUT_MS = 2_000

Uid = Callable[[str], str]


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"


def polling_url(base: str) -> str:
    return base + "/socket.io/?EIO=4&transport=polling"


@pytest.fixture(scope="module")
def edge_gateway(stack: Stack) -> Iterator[str]:
    """A gateway with small edge limits, no browser origins and no token leeway."""
    with extra_gateway(
        stack,
        "gateway-edge",
        CHAT_ALLOWED_ORIGINS="",
        CHAT_MAX_SOCKETS_PER_USER="2",
        CHAT_JWT_LEEWAY_S="0",
        CHAT_REFUSED_EVENTS_PER_MIN=str(REFUSED_PER_MIN),
        CHAT_REDIS_TIMEOUT_MS=str(REDIS_TIMEOUT_MS),
        CHAT_MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD),
        CHAT_MAX_FRAME_BYTES=str(MAX_FRAME),
        CHAT_CONNECT_TIMEOUT_MS=str(CONNECT_TIMEOUT_MS),
    ) as url:
        yield url


@pytest.fixture(scope="module")
def handshake_gateway(stack: Stack) -> Iterator[str]:
    """A gateway allowing 3 handshakes per address, refilled once every 100 s."""
    with extra_gateway(
        stack,
        "gateway-handshake",
        CHAT_HANDSHAKES_PER_ADDRESS_PER_S="0.01",
        CHAT_HANDSHAKE_BURST="3",
    ) as url:
        yield url


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # A new TCP connection per request: a WebSocket upgrade on a kept-alive polling
    # connection would reach python-engineio instead of the lean server.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


Open = Callable[..., Awaitable[ChatClient]]


@pytest_asyncio.fixture
async def open_client() -> AsyncIterator[Open]:
    """`await open_client(url, token, transports=[...])`: a connected client, closed
    after the test."""
    opened: list[ChatClient] = []

    async def _open(url: str, token: str, transports: list[str] | None = None) -> ChatClient:
        client = ChatClient(f"client-{len(opened)}")
        opened.append(client)
        return await client.connect(url, token, transports=transports or ["websocket"])

    yield _open
    for client in opened:
        await client.close()


async def open_ws(ws: aiohttp.ClientWebSocketResponse, token: str | None = None) -> dict[str, Any]:
    """Read the Engine.IO OPEN packet; with a token, complete the Socket.IO CONNECT."""
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0")
    handshake: dict[str, Any] = json.loads(opened[1:])
    if token is not None:
        await ws.send_str("40" + json.dumps({"token": token}))
        connected = await ws.receive_str(timeout=5)
        assert connected.startswith("40"), connected
    return handshake


async def closed_with(
    ws: aiohttp.ClientWebSocketResponse, timeout: float = 5
) -> tuple[int | None, list[str]]:
    """Read until the server closes; (close code, text packets seen before it)."""
    seen: list[str] = []
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            seen.append(msg.data)
            continue
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data), seen
        return ws.close_code, seen


async def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll a condition until it holds (for state with no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not await condition() if asyncio.iscoroutinefunction(condition) else not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# --- transports ------------------------------------------------------------------------


async def test_polling_upgrades_to_websocket_and_works_both_ways(
    stack: Stack, connect: Connect, open_client: Open, uid: Uid
) -> None:
    """socket.io-client's default: long-polling first, then the WebSocket upgrade."""
    alice, bob = uid("alice"), uid("bob")
    upgraded = await open_client(
        stack.gateway_url(0), stack.token(alice), transports=["polling", "websocket"]
    )
    assert upgraded.sio.eio.current_transport == "websocket"
    peer = await connect(bob, 1)
    text = {"type": "TEXT", "content": "over the upgrade"}
    ack = await upgraded.call(
        "message:send", {"clientMessageId": cmid(), "targetUserId": bob, **text}
    )
    assert ack["status"] == "ok", ack
    got = await peer.wait_for("message:new")
    assert got["content"] == "over the upgrade"
    back = {"type": "TEXT", "content": "back"}
    await peer.call("message:send", {"clientMessageId": cmid(), "targetUserId": alice, **back})
    assert (await upgraded.wait_for("message:new"))["content"] == "back"


async def test_origins_payload_limit_and_heartbeat_are_one_policy(
    edge_gateway: str, http: aiohttp.ClientSession
) -> None:
    # Empty CHAT_ALLOWED_ORIGINS: no browser, on either path (python-engineio used to
    # read the empty list as "allow every origin").
    evil = {"Origin": "https://evil.example"}
    async with http.get(polling_url(edge_gateway), headers=evil) as resp:
        assert resp.status == 400
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(ws_url(edge_gateway), headers=evil)
    assert err.value.status == 403
    # Non-browser clients (no Origin) get the same numbers on both paths.
    async with http.get(polling_url(edge_gateway)) as resp:
        assert resp.status == 200
        polling_open = json.loads((await resp.text())[1:])
    async with http.ws_connect(ws_url(edge_gateway)) as ws:
        ws_open = await open_ws(ws)
    for key in ("maxPayload", "pingInterval", "pingTimeout"):
        assert polling_open[key] == ws_open[key], key
    assert ws_open["maxPayload"] == MAX_PAYLOAD


# --- admission ---------------------------------------------------------------------------


async def test_connections_that_never_authenticate_are_dropped_at_the_deadline(
    edge_gateway: str, http: aiohttp.ClientSession
) -> None:
    """Slowloris: a request head that never ends, a WebSocket that never sends CONNECT,
    a long-polling session that never sends CONNECT; all gone after the deadline."""
    host, port = edge_gateway.removeprefix("http://").split(":")
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    async with http.get(polling_url(edge_gateway)) as resp:
        session = f"{polling_url(edge_gateway)}&sid={json.loads((await resp.text())[1:])['sid']}"
    async with http.ws_connect(ws_url(edge_gateway)) as ws:
        await open_ws(ws)
        code, _ = await closed_with(ws, timeout=CONNECT_TIMEOUT_MS / 1000 + 3)
        assert code is not None
    assert await asyncio.wait_for(reader.read(), CONNECT_TIMEOUT_MS / 1000 + 3) == b""
    writer.close()
    elapsed = time.monotonic() - started
    assert CONNECT_TIMEOUT_MS / 1000 - 0.5 < elapsed < CONNECT_TIMEOUT_MS / 1000 + 3
    deadline = time.monotonic() + 5
    while True:
        async with http.get(session) as resp:
            if resp.status != 200 or "1" in (await resp.text()).split("\x1e"):
                break  # the session was closed
        assert time.monotonic() < deadline, "polling session still open"


async def test_sockets_per_user_are_capped_with_limit_exceeded(
    stack: Stack, edge_gateway: str, open_client: Open, uid: Uid
) -> None:
    user = uid("many")
    first = await open_client(edge_gateway, stack.token(user))
    await open_client(edge_gateway, stack.token(user))
    third = ChatClient("many-3")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await third.connect(edge_gateway, stack.token(user))
    error = await third.wait_for("connect_error")
    assert error["data"]["code"] == "LIMIT_EXCEEDED"
    # Another user is not affected, and a freed slot can be taken again once the
    # gateway has seen the close.
    await open_client(edge_gateway, stack.token(uid("other")))
    await first.close()

    async def reconnects() -> bool:
        try:
            await open_client(edge_gateway, stack.token(user))
        except socketio.exceptions.ConnectionError:
            return False
        return True

    await wait_until(reconnects)


async def test_handshakes_are_rate_limited_per_source_address(
    stack: Stack, handshake_gateway: str, uid: Uid
) -> None:
    # Connections from another loopback address have a budget of their own.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.7", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        token = stack.token(uid("hs"))
        for _ in range(3):
            async with http.ws_connect(ws_url(handshake_gateway)) as ws:
                await open_ws(ws, token)
        async with http.ws_connect(ws_url(handshake_gateway)) as ws:
            await open_ws(ws)
            await ws.send_str("40" + json.dumps({"token": token}))
            refused = json.loads((await ws.receive_str(timeout=5))[2:])
    assert refused["data"]["code"] == "RATE_LIMITED"
    assert refused["data"]["retryAfter"] > 0
    # 127.0.0.1 still has its whole budget, on either transport.
    fresh = ChatClient("fresh")
    await fresh.connect(handshake_gateway, token, transports=["polling"])
    await fresh.close()


async def test_racing_connects_are_a_protocol_error_and_leave_no_one_online(
    stack: Stack, connect: Connect, http: aiohttp.ClientSession, uid: Uid
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    watcher = await connect(carol)
    group = await make_group(watcher, alice, bob)
    async with http.ws_connect(ws_url(stack.gateway_url(0))) as ws:
        await open_ws(ws)
        # Two CONNECTs with two tokens back to back: once, both registered the same
        # socket, and one user's presence lease was refreshed forever.
        await ws.send_str("40" + json.dumps({"token": stack.token(alice)}))
        await ws.send_str("40" + json.dumps({"token": stack.token(bob)}))
        code, _ = await closed_with(ws)
    assert code == 1002

    async def nobody_online() -> bool:
        ack = await watcher.call("presence:query", {"groupId": group})
        assert ack["status"] == "ok", ack
        return not {alice, bob} & set(ack["onlineUserIds"])

    await wait_until(nobody_online, timeout=8)


async def test_a_second_connect_on_a_polling_session_is_refused(
    stack: Stack, http: aiohttp.ClientSession, uid: Uid
) -> None:
    base = polling_url(stack.gateway_url(1))
    async with http.get(base) as resp:
        sid = json.loads((await resp.text())[1:])["sid"]
    session = f"{base}&sid={sid}"
    tokens = [json.dumps({"token": stack.token(uid(name))}) for name in ("ann", "ben")]
    async with http.post(session, data=f"40{tokens[0]}\x1e40{tokens[1]}") as resp:
        assert resp.status == 200
    packets: list[str] = []
    deadline = time.monotonic() + 5
    while not any(p.startswith("44") for p in packets):
        assert time.monotonic() < deadline, packets
        async with http.get(session) as resp:
            packets += (await resp.text()).split("\x1e")
    # python-socketio refuses the second CONNECT of a session on its own; the first
    # one stands, registered once.
    assert [p[:2] for p in packets if p[:2] in ("40", "44")] == ["40", "44"]


# --- identity over time --------------------------------------------------------------------


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_an_expired_token_disconnects_the_socket_asking_to_reauthenticate(
    stack: Stack, edge_gateway: str, open_client: Open, uid: Uid, transports: list[str]
) -> None:
    client = await open_client(
        edge_gateway, stack.token(uid("brief"), exp=int(time.time()) + 2), transports=transports
    )
    assert (await client.call("groups:list", {}))["status"] == "ok"
    error = await client.wait_for("connect_error", timeout=6)
    assert error == {
        "message": "unauthorized",
        "data": {"code": "UNAUTHORIZED", "reason": "token expired"},
    }
    await wait_until(lambda: not client.sio.connected)


# --- refused and malformed input ------------------------------------------------------------


async def test_a_socket_sending_garbage_is_disconnected(
    stack: Stack, edge_gateway: str, http: aiohttp.ClientSession, uid: Uid
) -> None:
    async with http.ws_connect(ws_url(edge_gateway)) as ws:
        await open_ws(ws, stack.token(uid("junk")))
        for i in range(REFUSED_PER_MIN + 1):
            await ws.send_str(f'42{i}["no:such-event",{{}}]')
        code, seen = await closed_with(ws)
    acks = [json.loads(p[p.index("[") :])[0] for p in seen if p.startswith("43")]
    assert len(acks) == REFUSED_PER_MIN
    assert {a["code"] for a in acks} == {"VALIDATION_ERROR"}
    assert code == 1008


async def test_an_event_on_a_namespace_we_do_not_serve_is_answered_over_websocket(
    stack: Stack, edge_gateway: str, http: aiohttp.ClientSession, uid: Uid
) -> None:
    # The long-polling path answers it too (test_packets_python_socketio_cannot_parse...).
    async with http.ws_connect(ws_url(edge_gateway)) as ws:
        await open_ws(ws, stack.token(uid("ns")))
        await ws.send_str('42/admin,3["groups:list",{}]')
        reply = await ws.receive_str(timeout=5)
        assert reply.startswith("433["), reply
        ack = json.loads(reply[3:])[0]
        assert (ack["code"], ack["error"]) == ("VALIDATION_ERROR", "unknown namespace /admin")
        for i in range(REFUSED_PER_MIN):  # counted: the allowance runs out one sooner
            await ws.send_str(f'42/admin,{10 + i}["groups:list",{{}}]')
        code, _ = await closed_with(ws)
    assert code == 1008


async def test_a_polling_session_sending_garbage_is_disconnected(
    stack: Stack, edge_gateway: str, open_client: Open, uid: Uid
) -> None:
    client = await open_client(edge_gateway, stack.token(uid("junkp")), transports=["polling"])
    for _ in range(REFUSED_PER_MIN):
        ack = await client.call("no:such-event", {})
        assert ack["code"] == "VALIDATION_ERROR"
    await client.emit("no:such-event", {})
    await wait_until(lambda: not client.sio.connected)


async def test_oversize_messages_get_an_ack_and_past_the_frame_limit_1009(
    stack: Stack, edge_gateway: str, http: aiohttp.ClientSession, uid: Uid
) -> None:
    async with http.ws_connect(ws_url(edge_gateway)) as ws:
        await open_ws(ws, stack.token(uid("big")))
        send = {"clientMessageId": "big", "targetUserId": uid("peer"), "type": "TEXT"}
        body = json.dumps(["message:send", {**send, "content": "x" * (MAX_PAYLOAD + 10)}])
        await ws.send_str("427" + body)
        reply = await ws.receive_str(timeout=5)
        assert reply.startswith("437[")
        ack = json.loads(reply[3:])[0]
        assert ack["code"] == "VALIDATION_ERROR"
        assert "too large" in ack["error"]
        # The socket still works.
        await ws.send_str('428["groups:list",{}]')
        assert (await ws.receive_str(timeout=5)).startswith('438[{"status":"ok"')
        await ws.send_str("429" + "y" * (MAX_FRAME + 1))
        code, _ = await closed_with(ws)
    assert code == 1009


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_a_handler_failure_is_acked_internal_not_left_silent(
    stack: Stack, open_client: Open, uid: Uid, transports: list[str]
) -> None:
    client = await open_client(stack.gateway_url(0), stack.token(uid("sq")), transports=transports)
    group = await make_group(client, uid("m"))
    # "²" passes str.isdigit() and then makes int() raise inside the handler.
    ack = await client.call("presence:query", {"groupId": group, "cursor": "²"})
    assert ack["status"] == "error"
    assert (await client.call("groups:list", {}))["status"] == "ok"


async def test_deeply_nested_json_is_answered(
    stack: Stack, http: aiohttp.ClientSession, uid: Uid
) -> None:
    deep = "[" * 1000 + "]" * 1000
    async with http.ws_connect(ws_url(stack.gateway_url(0))) as ws:
        await open_ws(ws)
        await ws.send_str('40{"token":' + deep + "}")
        refused = json.loads((await ws.receive_str(timeout=5))[2:])
        assert refused["data"]["code"] == "UNAUTHORIZED"
        await ws.send_str("40" + json.dumps({"token": stack.token(uid("deep"))}))
        assert (await ws.receive_str(timeout=5)).startswith("40")
        await ws.send_str('421["groups:list",' + deep + "]")
        ack = json.loads((await ws.receive_str(timeout=5))[3:])[0]
        assert ack["status"] == "error"


async def test_malformed_json_over_long_polling_gets_an_ack(
    stack: Stack, http: aiohttp.ClientSession, uid: Uid
) -> None:
    base = polling_url(stack.gateway_url(0))
    async with http.get(base) as resp:
        session = f"{base}&sid={json.loads((await resp.text())[1:])['sid']}"
    token = json.dumps({"token": stack.token(uid("poll"))})

    async def exchange(body: str, reply_prefix: str) -> str:
        async with http.post(session, data=body) as resp:
            assert resp.status == 200
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline
            async with http.get(session) as resp:
                for packet in (await resp.text()).split("\x1e"):
                    if packet.startswith(reply_prefix):
                        return packet

    assert (await exchange("40" + token, "40")).startswith("40")
    deep = "[" * 1000 + "]" * 1000
    for i, bad in enumerate(['["groups:list",{bad', f'["groups:list",{deep}]']):
        ack = json.loads((await exchange(f"42{i}{bad}", f"43{i}"))[3:])[0]
        assert ack["code"] == "VALIDATION_ERROR", ack


#: The polling gateway's allowance: the refused packets below spend it exactly.
POLLING_REFUSED_PER_MIN = 6


@pytest.fixture(scope="module")
def polling_gateway(stack: Stack) -> Iterator[ServiceProcess]:
    """A gateway of its own (its log is read) with a small refused-event allowance."""
    proc = stack.add(
        "gateway",
        "gateway-polling",
        CHAT_GATEWAY_ID="gateway-polling",
        CHAT_REFUSED_EVENTS_PER_MIN=str(POLLING_REFUSED_PER_MIN),
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
        del stack.processes["gateway-polling"]


async def test_packets_python_socketio_cannot_parse_are_answered_and_counted(
    stack: Stack, polling_gateway: ServiceProcess, http: aiohttp.ClientSession, uid: Uid
) -> None:
    base = polling_url(polling_gateway.url)
    async with http.get(base) as resp:
        session = f"{base}&sid={json.loads((await resp.text())[1:])['sid']}"
    received: list[str] = []

    async def post(*packets: str) -> None:
        async with http.post(session, data="\x1e".join(packets)) as resp:
            assert resp.status == 200

    async def until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not done():
            assert time.monotonic() < deadline, received
            async with http.get(session) as resp:
                if resp.status != 200:  # the session is gone
                    received.append(f"HTTP {resp.status}")
                    return
                received.extend((await resp.text()).split("\x1e"))

    def acks() -> dict[int, dict[str, Any]]:
        found = {}
        for p in received:
            if p.startswith("43"):
                ack_id, body = p[2 : p.index("[")], p[p.index("[") :]
                found[int(ack_id)] = json.loads(body)[0]
        return found

    await post("40" + json.dumps({"token": stack.token(uid("parse"))}))
    await until(lambda: any(p.startswith("40") for p in received))
    bad = [
        '421²["groups:list",{}]',  # "1²" is no ack id python-socketio can read
        '42/admin,2["groups:list",{}]',  # a namespace we do not serve
        '451-3["upload",{"_placeholder":true,"num":0}]',  # a binary packet
        "424",  # an event without a name
        '42²["groups:list",{}]',  # no readable ack id: counted, not answered
    ]
    await post(*bad, '425["groups:list",{}]')
    await until(lambda: 5 in acks())
    assert acks()[5]["status"] == "ok", acks()
    for ack_id, problem in [
        (1, "bad Socket.IO packet"),
        (2, "unknown namespace /admin"),
        (3, "binary packets are not supported"),
        (4, "malformed event packet"),
    ]:
        assert acks()[ack_id]["code"] == "VALIDATION_ERROR", acks()
        assert problem in acks()[ack_id]["error"], acks()
    # Five refused packets spent five of six: the sixth is the last one allowed, the
    # seventh closes the session.
    await post('42²["groups:list",{}]')
    await post('427["groups:list",{}]')
    await until(lambda: 7 in acks())
    await post('42²["groups:list",{}]')
    await until(lambda: any(p in ("1", "41") or p.startswith("HTTP") for p in received))
    assert "Traceback" not in polling_gateway.log.read_text()


async def test_a_malformed_request_line_gets_a_400(stack: Stack) -> None:
    port = int(stack.gateway_url(0).rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET //[x HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status.startswith(b"HTTP/1.1 400")


# --- order and Redis ---------------------------------------------------------------------------


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_messages_of_one_socket_are_stored_in_the_order_sent(
    stack: Stack, open_client: Open, uid: Uid, transports: list[str]
) -> None:
    sender = await open_client(stack.gateway_url(0), stack.token(uid("ord")), transports=transports)
    peer = uid("peer")
    # 15: python-engineio decodes at most 16 packets per long-polling POST.
    calls = [
        sender.call(
            "message:send",
            {"clientMessageId": cmid(), "targetUserId": peer, "type": "TEXT", "content": str(i)},
        )
        for i in range(15)
    ]
    acks = await asyncio.gather(*calls)
    assert all(a["status"] == "ok" for a in acks), acks
    by_seq = sorted(acks, key=lambda a: a["message"]["seq"])
    assert [int(a["message"]["content"]) for a in by_seq] == list(range(15))


async def test_a_hung_redis_gives_retry_acks_not_silence(
    stack: Stack, edge_gateway: str, open_client: Open, uid: Uid
) -> None:
    assert stack.redis is not None
    client = await open_client(edge_gateway, stack.token(uid("hang")))
    spin = (
        "local t = redis.call('TIME') while true do local n = redis.call('TIME') "
        "if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 1500000 then return 1 end end"
    )
    blocker = Redis.from_url(stack.redis.url)
    try:
        spinning = asyncio.ensure_future(blocker.eval(spin, 0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        ack = await client.call("groups:list", {}, timeout=1.4)
        elapsed = time.monotonic() - started
        await spinning
    finally:
        await blocker.aclose()
    assert ack["status"] == "retry", ack
    assert ack["code"] == "UNAVAILABLE"
    assert elapsed < 1.2
    # Redis is back: so is the gateway.
    assert (await client.call("groups:list", {}))["status"] == "ok"
