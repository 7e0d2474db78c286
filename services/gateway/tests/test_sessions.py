"""Token expiry and the long-polling connect deadline, swept without I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chat_contracts.bus import Actor
from chat_gateway.conn import OutFrame
from chat_gateway.registry import Registry
from chat_gateway.sessions import COMPACT_SLACK, Sessions


@dataclass
class Conn:
    sid: str
    peer: str = ""
    sent: list[str] = field(default_factory=list)
    closed: bool = False

    def is_closed(self) -> bool:
        return self.closed

    def send(self, frame: OutFrame) -> None:
        self.sent.append(frame.text)

    def close(self) -> None:
        self.closed = True

    def strike(self) -> None:
        raise AssertionError("not expected")


@dataclass
class Eio:
    sockets: dict[str, object] = field(default_factory=dict)
    closing: list[str] = field(default_factory=list)

    async def disconnect(self, sid: str) -> None:
        self.closing.append(sid)


def _sessions(timeout_ms: int = 2000) -> tuple[Sessions, Registry, Eio, list[Any]]:
    registry, eio = Registry(), Eio()
    spawned: list[Any] = []
    return Sessions(registry, eio, timeout_ms, spawned.append), registry, eio, spawned


def test_an_expired_token_gets_connect_error_and_the_socket_closes() -> None:
    sessions, registry, _, _ = _sessions()
    early, late = Conn("s1"), Conn("s2")
    for conn, exp in ((early, 100.0), (late, 200.0)):
        registry.add_socket(conn, Actor(user_id=conn.sid, name=conn.sid))
        sessions.connected(conn.sid, exp)
    sessions.expire_tokens(99.0)
    assert not early.is_closed()
    sessions.expire_tokens(150.0)
    assert early.is_closed()
    assert not late.is_closed()
    [packet] = early.sent
    assert packet[0] == "4"  # Socket.IO CONNECT_ERROR
    assert json.loads(packet[1:]) == {
        "message": "unauthorized",
        "data": {"code": "UNAUTHORIZED", "reason": "token expired"},
    }


def test_a_socket_that_already_left_is_skipped() -> None:
    sessions, _, _, _ = _sessions()
    sessions.connected("gone", 1.0)
    sessions.expire_tokens(2.0)
    assert len(sessions) == 0


def test_sessions_without_a_connect_are_dropped_after_the_deadline() -> None:
    sessions, _, eio, spawned = _sessions(timeout_ms=2000)
    eio.sockets = {"idle": object(), "ok": object()}
    sessions.session_authenticated("ok")
    sessions.drop_unauthenticated(10.0)  # first seen
    sessions.drop_unauthenticated(11.9)
    assert not spawned
    sessions.drop_unauthenticated(12.1)
    assert len(spawned) == 1
    spawned[0].close()  # the disconnect coroutine (not run here)
    # A session whose socket left is pending again.
    sessions.session_left("ok")
    sessions.drop_unauthenticated(20.0)
    sessions.drop_unauthenticated(22.5)
    assert len(spawned) == 3  # "idle" again (still listed) and "ok"
    for coro in spawned[1:]:
        coro.close()


def test_sockets_that_left_do_not_pile_up_until_their_tokens_expire() -> None:
    sessions, registry, _, _ = _sessions()
    staying = Conn("stay")
    registry.add_socket(staying, Actor(user_id="stay", name="stay"))
    sessions.connected("stay", 500.0)
    for i in range(20_000):  # reconnects with day-long tokens
        sessions.connected(f"s{i}", 90_000.0)
        sessions.left(f"s{i}")
    assert len(sessions) <= 2 + COMPACT_SLACK
    sessions.expire_tokens(600.0)
    assert staying.is_closed()
    assert len(sessions) <= 1 + COMPACT_SLACK


def test_a_sid_that_left_and_came_back_keeps_only_its_new_deadline() -> None:
    sessions, registry, _, _ = _sessions()
    conn = Conn("s1")
    registry.add_socket(conn, Actor(user_id="u", name="u"))
    sessions.connected("s1", 100.0)
    sessions.left("s1")
    sessions.connected("s1", 300.0)
    sessions.expire_tokens(200.0)  # the old entry comes up first: not this socket's
    assert not conn.is_closed()
    sessions.expire_tokens(300.0)
    assert conn.is_closed()
