"""`SioConnection`: the long-polling send queue obeys the WebSocket path's slow-client rule."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from chat_gateway.conn import OutFrame, SioConnection
from chat_gateway.policy import TransportPolicy


@dataclass
class EioSocket:
    """The two attributes of python-engineio's socket `SioConnection` touches."""

    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    closed: bool = False


@dataclass
class EioServer:
    """python-engineio's server as `SioConnection` uses it: sessions, and closing one."""

    sockets: dict[str, EioSocket] = field(default_factory=dict)
    disconnected: list[str] = field(default_factory=list)

    async def disconnect(self, sid: str) -> None:
        self.disconnected.append(sid)
        self.sockets.pop(sid, None)


async def settle() -> None:
    """Let the close task run."""
    for _ in range(5):
        await asyncio.sleep(0)


def _conn(limit: int, **policy: Any) -> tuple[SioConnection, EioSocket, EioServer]:
    socket = EioSocket()
    server = EioServer({"eio": socket})
    conn = SioConnection("sid", "eio", server, TransportPolicy(max_write_buffer=limit, **policy))
    return conn, socket, server


async def test_a_poller_that_never_fetches_is_cut_off() -> None:
    conn, socket, server = _conn(limit=1000)
    frame = OutFrame.event("message:new", b'{"pad":"' + b"x" * 200 + b'"}')
    for _ in range(4):
        conn.send(frame)
    assert socket.queue.qsize() == 4
    conn.send(frame)  # past 1,000 bytes unsent
    await settle()
    assert socket.queue.qsize() == 4  # not queued
    assert server.disconnected == ["eio"]


async def test_a_poller_that_fetches_is_never_cut_off() -> None:
    conn, socket, server = _conn(limit=1000)
    frame = OutFrame.event("message:new", b'{"pad":"' + b"x" * 200 + b'"}')
    for _ in range(50):
        conn.send(frame)
        conn.send(frame)
        # A poll takes the whole queue.
        while not socket.queue.empty():
            assert socket.queue.get_nowait() is not None
    await settle()
    assert not server.disconnected


async def test_refused_events_close_the_session_past_the_allowance() -> None:
    conn, _socket, server = _conn(limit=1000, refused_per_min=3)
    for _ in range(3):
        conn.strike()
    await settle()
    assert not server.disconnected
    conn.strike()
    await settle()
    assert server.disconnected == ["eio"]
