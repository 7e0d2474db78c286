"""The long-polling path's parse guard, and the python-engineio/python-socketio internals
the gateway relies on (services/gateway/pyproject.toml pins the versions checked here;
these tests fail loudly when an upgrade changes them)."""

from __future__ import annotations

import asyncio
import inspect

import engineio
import pytest
import socketio
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket

from chat_gateway import jsonmod
from chat_gateway.registry import Registry
from chat_gateway.sio import BadPacket, GuardedPacket, GuardedServer, readable_ack_id


def changed(internal: str, user: str) -> str:
    """The failure message: which internal moved and which file relies on it."""
    return (
        f"python-engineio/python-socketio internals changed: {internal} (relied on by "
        f"services/gateway/src/chat_gateway/{user}); re-check it before moving the pins in "
        "services/gateway/pyproject.toml"
    )


# --- internals --------------------------------------------------------------------------


def test_socketio_dispatches_engineio_messages_through_the_method_sio_py_wraps() -> None:
    handle = getattr(socketio.AsyncServer, "_handle_eio_message", None)
    internal = "socketio.AsyncServer._handle_eio_message(eio_sid, data)"
    assert inspect.iscoroutinefunction(handle), changed(internal, "sio.py")
    assert list(inspect.signature(handle).parameters) == ["self", "eio_sid", "data"], changed(
        internal, "sio.py"
    )
    server = GuardedServer(Registry(), async_mode="aiohttp")
    # The constructor registers the bound method: our override is what Engine.IO calls.
    registered = server.eio.handlers.get("message")
    assert registered == server._handle_eio_message, changed(
        "AsyncServer registers self._handle_eio_message as Engine.IO's 'message' handler",
        "sio.py",
    )


def test_socketio_packets_decode_with_the_class_json_and_our_decode() -> None:
    server = GuardedServer(Registry(), async_mode="aiohttp")
    assert server.packet_class is GuardedPacket, changed("AsyncServer(serializer=)", "sio.py")
    assert GuardedPacket.json is jsonmod.Lenient, changed("Packet.json", "sio.py")
    # Bad JSON reaches the gateway as an event (not an exception): decode used `cls.json`.
    bad = GuardedPacket(encoded_packet='21["groups:list",{bad')
    assert (bad.packet_type, bad.id, bad.data) == (2, 1, [jsonmod.MALFORMED]), changed(
        "Packet.decode reading cls.json", "sio.py"
    )


async def test_engineio_sessions_expose_the_queue_conn_py_caps() -> None:
    server = engineio.AsyncServer(async_mode="aiohttp")
    assert isinstance(getattr(server, "sockets", None), dict), changed(
        "engineio.AsyncServer.sockets", "conn.py and sessions.py"
    )
    socket = AsyncSocket(server, "eio-sid")
    assert isinstance(getattr(socket, "queue", None), asyncio.Queue), changed(
        "engineio AsyncSocket.queue", "conn.py"
    )
    assert getattr(socket, "closed", None) is False, changed("AsyncSocket.closed", "conn.py")
    packet = eio_packet.Packet(eio_packet.MESSAGE, data='2["e",{}]')
    assert packet.encode() == '42["e",{}]', changed("engineio.packet.Packet(MESSAGE)", "conn.py")


# --- what the guard refuses ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('2²["groups:list",{}]', "bad Socket.IO packet"),
        ('21²["groups:list",{}]', "bad Socket.IO packet"),
        ("2" + "1" * 101 + '["groups:list"]', "bad Socket.IO packet"),
        ('x["groups:list"]', "bad Socket.IO packet"),
        ('51-3["up",{"_placeholder":true,"num":0}]', "binary packets are not supported"),
        ('4{"message":"x"}', "unexpected packet type 4"),
        ('2/admin,4["groups:list",{}]', "unknown namespace /admin"),
        ("2/admin", "unknown namespace /admin"),
        ("27", "malformed event packet"),
        ("2[]", "malformed event packet"),
        ('2{"a":1}', "malformed event packet"),
        ("2[1,{}]", "malformed event packet"),
    ],
)
def test_packets_python_socketio_cannot_handle_are_refused(text: str, reason: str) -> None:
    with pytest.raises(BadPacket, match=reason):
        GuardedPacket(encoded_packet=text)


def test_binary_engineio_messages_are_refused() -> None:
    with pytest.raises(BadPacket, match="binary messages are not supported"):
        GuardedPacket(encoded_packet=b"\x00\x01")


@pytest.mark.parametrize(
    "text", ['0{"token":"t"}', '0/admin,{"token":"t"}', '27["groups:list",{}]', "1", '31["x"]']
)
def test_packets_python_socketio_handles_pass(text: str) -> None:
    GuardedPacket(encoded_packet=text)


@pytest.mark.parametrize(
    ("text", "ack_id"),
    [
        ('21²["x"]', 1),
        ('2²["x"]', None),
        ('2/admin,4["x"]', 4),
        ('51-3["up",{"_placeholder":true,"num":0}]', 3),
        ('51-/a,9["up"]', 9),
        ("x", None),
        ("", None),
    ],
)
def test_the_ack_id_is_read_where_it_is_readable(text: str, ack_id: int | None) -> None:
    assert readable_ack_id(text) == ack_id
