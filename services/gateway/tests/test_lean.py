"""`LeanConnection` against a fake transport, in the style of python-engineio's socket
tests: bytes in through `data_received`, assertions on what was written, closed or
paused, and on what the handler was asked to do."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import struct
import time
from typing import Any

import pytest

from chat_gateway import lean, wire
from chat_gateway.conn import OutFrame
from chat_gateway.lean import LeanConnection, LeanServer, Refused
from chat_gateway.policy import TransportPolicy
from chat_gateway.wire import CloseCode
from chat_testkit.probes import tasks_running

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade_request(
    path: str = "/socket.io/?EIO=4&transport=websocket",
    version: str = "13",
    origin: str | None = None,
    forwarded_for: str | None = None,
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: gw",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        f"Sec-WebSocket-Version: {version}",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if forwarded_for is not None:
        lines.append(f"X-Forwarded-For: {forwarded_for}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(payload: bytes, opcode: int = wire.OP_TEXT) -> bytes:
    """A masked, final client→server frame."""
    mask = b"\x0a\x0b\x0c\x0d"
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + wire.unmask(mask, payload)


def text(packet: str) -> bytes:
    """One masked client text frame."""
    return client_frame(packet.encode())


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server→client frames (after the HTTP response head)."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        length, pos = b1 & 0x7F, pos + 2
        if length == 126:
            length, pos = struct.unpack("!H", data[pos : pos + 2])[0], pos + 2
        elif length == 127:
            length, pos = struct.unpack("!Q", data[pos : pos + 8])[0], pos + 8
        frames.append((b0 & 0x0F, data[pos : pos + length]))
        pos += length
    return frames


class FakeTransport:
    """What `LeanConnection` uses of an asyncio transport, recorded."""

    def __init__(self, peer: str = "198.51.100.7") -> None:
        self.peer = (peer, 40000)
        self.written = bytearray()
        self.closed = False
        #: Half-closed: our FIN is out (write_eof).
        self.eof = False
        self.aborted = False
        self.paused = False
        self.pauses = 0
        self.buffered = 0
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def was_aborted(self) -> bool:
        return self.aborted

    def is_paused(self) -> bool:
        return self.paused

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    # --- reading back ---

    def response_head(self) -> bytes:
        return bytes(self.written[: self.written.find(b"\r\n\r\n") + 4])

    def frames(self) -> list[tuple[int, bytes]]:
        return server_frames(bytes(self.written[len(self.response_head()) :]))

    def packets(self) -> list[str]:
        """Engine.IO text packets the server sent."""
        return [p.decode() for op, p in self.frames() if op == wire.OP_TEXT]

    def close_code(self) -> int | None:
        for op, payload in self.frames():
            if op == wire.OP_CLOSE:
                return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005
        return None


class FakeHandler:
    """Records calls; tokens "ok*" connect, "boom" crashes, anything else is refused."""

    def __init__(self) -> None:
        self.connects: list[Any] = []
        self.peers: list[str] = []
        self.events: list[tuple[str, Any]] = []
        self.disconnects: list[str] = []
        self.event_delays: dict[str, float] = {}
        self.gate: asyncio.Event | None = None

    async def connect(self, conn: LeanConnection, auth: Any) -> None:
        self.connects.append(auth)
        self.peers.append(conn.peer)
        await asyncio.sleep(0)
        token = auth.get("token") if isinstance(auth, dict) else None
        if token == "boom":
            raise RuntimeError("handler bug")
        if not isinstance(token, str) or not token.startswith("ok"):
            raise Refused("unauthorized", {"code": "UNAUTHORIZED"})

    async def event(self, sid: str, event: str, data: Any) -> dict[str, Any] | None:
        self.events.append((event, None if data is None else json.loads(bytes(data))))
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.event_delays.get(event, 0))
        if event == "boom":
            raise RuntimeError("handler bug")
        if event == "unknown":
            return {"status": "error", "code": "VALIDATION_ERROR", "error": "unknown"}
        return {"status": "ok", "echo": event}

    async def disconnect(self, sid: str) -> None:
        self.disconnects.append(sid)


async def settle(turns: int = 10) -> None:
    """Let spawned tasks and the per-turn flush run."""
    for _ in range(turns):
        await asyncio.sleep(0)


class TestLeanConnection:
    def _server(self, **policy: Any) -> tuple[LeanServer, FakeHandler]:
        handler = FakeHandler()
        base: dict[str, Any] = {"allowed_origins": frozenset({"https://app.example"})}
        base.update(policy)
        fallback_protocols: list[Any] = []

        class Fallback(asyncio.Protocol):
            def __init__(self) -> None:
                self.received = bytearray()
                fallback_protocols.append(self)

            def data_received(self, data: bytes) -> None:
                self.received += data

        server = LeanServer(handler, TransportPolicy(**base), fallback=Fallback)
        server.fallback_protocols = fallback_protocols  # type: ignore[attr-defined]
        return server, handler

    def _connection(
        self, server: LeanServer, peer: str = "198.51.100.7"
    ) -> tuple[LeanConnection, FakeTransport]:
        conn = server.protocol()
        transport = FakeTransport(peer)
        conn.connection_made(transport)  # type: ignore[arg-type]
        return conn, transport

    async def _upgraded(
        self, server: LeanServer, peer: str = "198.51.100.7"
    ) -> tuple[LeanConnection, FakeTransport]:
        conn, transport = self._connection(server, peer)
        conn.data_received(upgrade_request())
        assert transport.response_head().startswith(b"HTTP/1.1 101")
        return conn, transport

    async def _connected(
        self, server: LeanServer, peer: str = "198.51.100.7"
    ) -> tuple[LeanConnection, FakeTransport]:
        conn, transport = await self._upgraded(server, peer)
        conn.data_received(text('40{"token":"ok"}'))
        await settle()
        assert conn.sio_connected
        return conn, transport

    # --- handshake ---------------------------------------------------------------------

    async def test_upgrade_answers_101_and_the_open_packet_from_the_policy(self) -> None:
        server, _ = self._server(max_payload=12345, ping_interval_ms=7000)
        conn, transport = await self._upgraded(server)
        head = transport.response_head().decode()
        assert f"Sec-WebSocket-Accept: {wire.accept_key(KEY)}" in head
        [opened] = transport.packets()
        assert opened[0] == "0"
        body = json.loads(opened[1:])
        assert body["sid"] == conn.sid
        assert (body["maxPayload"], body["pingInterval"]) == (12345, 7000)
        assert server.connections[conn.sid] is conn

    async def test_websocket_versions_other_than_13_are_refused(self) -> None:
        server, _ = self._server()
        conn, transport = self._connection(server)
        conn.data_received(upgrade_request(version="8"))
        assert transport.response_head().startswith(b"HTTP/1.1 426")
        assert b"Sec-WebSocket-Version: 13" in transport.response_head()
        assert transport.closed
        assert not server.connections

    @pytest.mark.parametrize(
        ("allowed", "origin", "status"),
        [
            (frozenset(), None, b"101"),  # not a browser
            (frozenset(), "https://app.example", b"403"),  # empty = no browser at all
            (frozenset({"https://app.example"}), "https://app.example", b"101"),
            (frozenset({"https://app.example"}), "https://evil.example", b"403"),
            (frozenset({"*"}), "https://evil.example", b"101"),
        ],
    )
    async def test_origins_follow_the_policy(
        self, allowed: frozenset[str], origin: str | None, status: bytes
    ) -> None:
        server, _ = self._server(allowed_origins=allowed)
        conn, transport = self._connection(server)
        conn.data_received(upgrade_request(origin=origin))
        assert transport.response_head().startswith(b"HTTP/1.1 " + status)

    @pytest.mark.parametrize("line", [b"GET //[x HTTP/1.1", b"GET http://[::1 HTTP/1.1"])
    async def test_malformed_request_target_is_a_400_not_a_crash(self, line: bytes) -> None:
        server, _ = self._server()
        conn, transport = self._connection(server)
        conn.data_received(line + b"\r\nHost: x\r\n\r\n")
        assert transport.response_head().startswith(b"HTTP/1.1 400")
        assert transport.closed

    async def test_other_requests_are_handed_to_aiohttp_with_every_byte(self) -> None:
        server, _ = self._server()
        conn, transport = self._connection(server)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.data_received(request[:10])
        conn.data_received(request[10:])
        [fallback] = server.fallback_protocols  # type: ignore[attr-defined]
        assert transport.protocol is fallback
        assert bytes(fallback.received) == request
        # aiohttp owns it now: it no longer counts as pending here.
        assert conn not in server.unauthenticated
        assert server.pending.total == 0

    # --- slowloris and admission ----------------------------------------------------------

    async def test_connect_deadline_covers_unfinished_heads_and_silent_sockets(self) -> None:
        server, _ = self._server(connect_timeout_ms=1000)
        half, half_t = self._connection(server)
        half.data_received(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost")
        _silent, silent_t = await self._upgraded(server)
        _done, done_t = await self._connected(server)
        server.sweep(time.monotonic() + 0.5)
        assert not half_t.was_aborted()
        server.sweep(time.monotonic() + 1.5)
        assert half_t.was_aborted()
        assert silent_t.was_aborted()
        assert not done_t.was_aborted()

    async def test_pending_connections_are_capped_per_address_and_in_total(self) -> None:
        server, _ = self._server(max_pending=3, max_pending_per_address=2)
        a1 = self._connection(server, "192.0.2.1")
        a2 = self._connection(server, "192.0.2.1")
        a3 = self._connection(server, "192.0.2.1")
        assert not a1[1].closed
        assert not a2[1].closed
        assert a3[1].closed
        assert a3[1].written.startswith(b"HTTP/1.1 503")
        b1 = self._connection(server, "192.0.2.2")
        b2 = self._connection(server, "192.0.2.2")
        assert not b1[1].closed
        assert b2[1].closed  # the total cap
        # One of the first address's connections leaves: room again for that address.
        a1[0].connection_lost(None)
        a4 = self._connection(server, "192.0.2.1")
        assert not a4[1].closed

    async def test_behind_a_trusted_proxy_limits_apply_to_the_forwarded_client(self) -> None:
        server, handler = self._server(
            max_pending_per_address=1, trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),)
        )
        # The proxy carries many clients: not held to the per-address cap.
        first, _ = self._connection(server, "10.0.0.2")
        second, second_t = self._connection(server, "10.0.0.2")
        assert not second_t.closed
        first.data_received(upgrade_request(forwarded_for="6.6.6.6, 198.51.100.4"))
        first.data_received(text('40{"token":"ok"}'))
        # An untrusted peer's header is ignored.
        other, _ = self._connection(server, "203.0.113.1")
        other.data_received(upgrade_request(forwarded_for="198.51.100.4"))
        other.data_received(text('40{"token":"ok"}'))
        await settle()
        assert handler.peers == ["198.51.100.4", "203.0.113.1"]
        assert server.pending.total == 1  # `second` only
        second.connection_lost(None)
        assert server.pending.total == 0

    async def test_authenticating_releases_the_pending_slot(self) -> None:
        server, _ = self._server(max_pending=1)
        conn, _transport = await self._connected(server)
        assert server.pending.total == 0
        assert conn not in server.unauthenticated
        _, other = self._connection(server, "192.0.2.9")
        assert not other.closed

    # --- Socket.IO CONNECT --------------------------------------------------------------

    async def test_connect_then_an_event_with_its_ack(self) -> None:
        server, handler = self._server()
        conn, transport = await self._connected(server)
        assert transport.packets()[-1] == "40" + json.dumps({"sid": conn.sid}).replace(" ", "")
        conn.data_received(text('427["groups:list",{"a":1}]'))
        await settle()
        assert handler.events == [("groups:list", {"a": 1})]
        assert transport.packets()[-1] == '437[{"status":"ok","echo":"groups:list"}]'

    async def test_a_second_connect_while_connected_is_a_protocol_error(self) -> None:
        server, handler = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(text('40{"token":"ok2"}'))
        await settle()
        assert transport.close_code() == CloseCode.PROTOCOL_ERROR
        assert len(handler.connects) == 1

    async def test_connects_in_one_write_run_one_handshake(self) -> None:
        # 2,000 CONNECTs in one write once made 2,000 token checks; two with different
        # tokens raced and left a stale registration behind.
        server, handler = self._server()
        conn, transport = await self._upgraded(server)
        burst = text('40{"token":"ok-a"}') + text('40{"token":"ok-b"}') * 1999
        conn.data_received(burst)
        await settle()
        assert handler.connects == [{"token": "ok-a"}]
        assert transport.close_code() == CloseCode.PROTOCOL_ERROR
        # The one handshake finished on a closed transport: it was undone.
        assert handler.disconnects == [conn.sid]

    async def test_a_refused_connect_may_be_retried(self) -> None:
        server, handler = self._server()
        conn, transport = await self._upgraded(server)
        conn.data_received(text('40{"token":"bad"}'))
        await settle()
        assert transport.packets()[-1].startswith('44{"message":"unauthorized"')
        conn.data_received(text('40{"token":"ok"}'))
        await settle()
        assert conn.sio_connected
        assert len(handler.connects) == 2

    async def test_deeply_nested_connect_payload_is_refused_not_raised(self) -> None:
        server, handler = self._server()
        conn, transport = await self._upgraded(server)
        conn.data_received(text('40{"token":' + "[" * 1000 + "]" * 1000 + "}"))
        await settle()
        assert handler.connects == [None]
        assert transport.packets()[-1].startswith('44{"message":"unauthorized"')

    async def test_a_crashing_handshake_gets_an_internal_connect_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        server, _ = self._server()
        conn, transport = await self._upgraded(server)
        conn.data_received(text('40{"token":"boom"}'))
        await settle()
        error = json.loads(transport.packets()[-1][2:])
        assert error == {"message": "internal error", "data": {"code": "INTERNAL"}}
        assert [r for r in caplog.records if conn.sid in r.getMessage()]

    # --- events -------------------------------------------------------------------------

    async def test_a_crashing_event_handler_acks_internal_and_logs_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        server, _ = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(text('425["boom",{}]'))
        await settle()
        assert json.loads(transport.packets()[-1][3:]) == [
            {"status": "error", "code": "INTERNAL", "error": "internal error"}
        ]
        logged = [r for r in caplog.records if conn.sid in r.getMessage()]
        assert len(logged) == 1
        assert logged[0].exc_info is not None

    async def test_deeply_nested_event_payload_gets_an_ack(self) -> None:
        server, handler = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(text('429["a",' + "[" * 1000 + "]" * 1000 + "]"))
        await settle()
        ack = json.loads(transport.packets()[-1][3:])[0]
        assert ack["code"] == "VALIDATION_ERROR"
        assert not handler.events

    async def test_events_are_handled_in_arrival_order(self) -> None:
        server, handler = self._server()
        conn, transport = await self._connected(server)
        # The first takes longest: concurrent tasks would finish (and ack) in reverse.
        handler.event_delays = {"e0": 0.03, "e1": 0.02, "e2": 0.01, "e3": 0}
        conn.data_received(b"".join(text(f'42{i}["e{i}"]') for i in range(4)))
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len(transport.packets()) >= 6:
                break
        acks = [p for p in transport.packets() if p.startswith("43")]
        assert [a[:3] for a in acks] == ["430", "431", "432", "433"]
        assert [e for e, _ in handler.events] == ["e0", "e1", "e2", "e3"]

    async def test_a_busy_socket_pauses_reading_instead_of_queueing_without_bound(self) -> None:
        server, handler = self._server(max_in_flight=4)
        conn, transport = await self._connected(server)
        handler.gate = asyncio.Event()
        conn.data_received(b"".join(text(f'42{i}["e{i}"]') for i in range(5)))
        await settle()
        assert transport.is_paused()
        assert len(handler.events) == 1  # one in progress, the rest wait in order
        assert not server._tasks or len(server._tasks) == 1
        handler.gate.set()
        for _ in range(50):
            await asyncio.sleep(0)
            if not transport.paused and len(handler.events) == 5:
                break
        assert not transport.is_paused()
        assert [e for e, _ in handler.events] == ["e0", "e1", "e2", "e3", "e4"]

    async def test_a_full_inbox_leaves_the_rest_of_a_read_unparsed_until_it_has_room(
        self,
    ) -> None:
        """One read of 200 events (a flood's 256 KiB read is ~4,800): parsing stops
        where the inbox is full; the rest is parsed as it drains, none lost or
        reordered, and reading resumes once the bytes already received are used up."""
        conn, transport, handler = await self._held(200)
        assert len(handler.events) == 1
        # Before: all 200 parsed and queued behind the running one.
        assert conn.queued == 4
        assert not [p for p in transport.packets() if p.startswith("43")]
        assert handler.gate is not None
        handler.gate.set()
        for _ in range(5000):
            await asyncio.sleep(0)
            if len([p for p in transport.packets() if p.startswith("43")]) == 200:
                break
        acks = [p for p in transport.packets() if p.startswith("43")]
        assert [int(a[2 : a.index("[")]) for a in acks] == list(range(200))
        assert [e for e, _ in handler.events] == [f"e{i}" for i in range(200)]
        assert not transport.is_paused()
        assert conn.queued == 0

    async def test_a_frame_cut_at_the_pause_point_is_completed_by_the_next_read(self) -> None:
        server, handler = self._server(max_in_flight=4)
        conn, transport = await self._connected(server)
        handler.gate = asyncio.Event()
        data = b"".join(text(f'42{i}["e{i}",{{"n":{i}}}]') for i in range(40))
        cut = len(data) // 2 + 3  # inside a frame
        conn.data_received(data[:cut])
        await settle()
        assert transport.is_paused()
        assert conn.queued == 4
        handler.gate.set()
        for _ in range(2000):
            await asyncio.sleep(0)
            if not transport.is_paused():
                break
        # A real transport delivers nothing while paused: the rest comes now.
        assert not transport.is_paused()
        conn.data_received(data[cut:])
        for _ in range(2000):
            await asyncio.sleep(0)
            if len(handler.events) == 40 and not transport.is_paused():
                break
        assert handler.events == [(f"e{i}", {"n": i}) for i in range(40)]

    async def test_a_held_socket_that_is_closed_still_reads_the_peers_close_frame(
        self,
    ) -> None:
        conn, transport, handler = await self._held(100)
        conn.close(CloseCode.GOING_AWAY, "server going away")
        assert not transport.is_paused()
        assert conn.queued == 0
        # The unparsed rest, then the peer's answer: read through, nothing handled.
        conn.data_received(client_frame(struct.pack("!H", 1001), opcode=wire.OP_CLOSE))
        assert transport.closed
        assert handler.gate is not None
        handler.gate.set()
        await settle()
        assert [e for e, _ in handler.events] == ["e0"]

    async def _held(self, events: int) -> tuple[LeanConnection, FakeTransport, FakeHandler]:
        """A socket with an inbox of 4 that sent `events` events in one read, its
        handler stuck on the first (`handler.gate`): paused."""
        server, handler = self._server(max_in_flight=4)
        conn, transport = await self._connected(server)
        handler.gate = asyncio.Event()
        conn.data_received(b"".join(text(f'42{i}["e{i}"]') for i in range(events)))
        await settle()
        assert transport.is_paused()
        return conn, transport, handler

    async def test_losing_the_connection_mid_event_drops_the_rest_quietly(self) -> None:
        server, handler = self._server()
        conn, _ = await self._connected(server)
        handler.gate = asyncio.Event()
        conn.data_received(b"".join(text(f'42{i}["e{i}"]') for i in range(3)))
        await settle()
        [drain] = server._tasks
        conn.connection_lost(None)
        handler.gate.set()
        await settle()
        assert [e for e, _ in handler.events] == ["e0"]
        assert drain.done()
        assert drain.exception() is None

    async def test_a_socket_that_keeps_sending_garbage_is_closed(self) -> None:
        server, handler = self._server(refused_per_min=5)
        conn, transport = await self._connected(server)
        conn.data_received(b"".join(text(f"42{i}not json") for i in range(5)))
        await settle()
        assert not transport.closed
        assert len([p for p in transport.packets() if p.startswith("43")]) == 5
        conn.data_received(text("425not json"))
        await settle()
        assert transport.close_code() == CloseCode.POLICY_VIOLATION
        assert not handler.events

    async def test_binary_socketio_packets_are_refused_clearly(self) -> None:
        server, handler = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(text('451-["a",{"_placeholder":true,"num":0}]'))
        await settle()
        assert transport.close_code() == CloseCode.UNSUPPORTED_DATA
        [(_, payload)] = [f for f in transport.frames() if f[0] == wire.OP_CLOSE]
        assert b"binary" in payload
        assert not handler.events

    async def test_an_oversize_event_gets_an_error_ack_and_past_the_hard_limit_1009(
        self,
    ) -> None:
        server, handler = self._server(max_payload=1000, max_frame=4000)
        conn, transport = await self._connected(server)
        big = '4231["message:send",{"content":"' + "x" * 2000 + '"}]'
        conn.data_received(text(big))
        await settle()
        assert transport.packets()[-1].startswith("4331[")
        ack = json.loads(transport.packets()[-1][4:])[0]
        assert ack["code"] == "VALIDATION_ERROR"
        assert "too large" in ack["error"]
        assert not handler.events
        assert not transport.closed
        conn.data_received(text("42" + "y" * 5000))
        assert transport.close_code() == CloseCode.MESSAGE_TOO_BIG

    # --- WebSocket control frames ---------------------------------------------------------

    async def test_close_frames_are_echoed_and_bad_ones_are_protocol_errors(self) -> None:
        server, _ = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(client_frame(struct.pack("!H", 4001), opcode=wire.OP_CLOSE))
        assert transport.close_code() == 4001
        conn, transport = await self._connected(server)
        conn.data_received(client_frame(struct.pack("!H", 1005), opcode=wire.OP_CLOSE))
        assert transport.close_code() == CloseCode.PROTOCOL_ERROR

    async def test_our_close_half_closes_and_waits_for_the_peers_close_frame(self) -> None:
        server, handler = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(text('451-["a",{"_placeholder":true,"num":0}]'))
        await settle()
        # Close frame and FIN out, input still read (closing now could RST it away).
        assert transport.close_code() == CloseCode.UNSUPPORTED_DATA
        assert transport.eof
        assert not transport.closed
        assert handler.disconnects == [conn.sid]  # out of Socket.IO at once
        written = len(transport.written)
        conn.data_received(text('4212["groups:list",{}]'))  # late input: read, dropped
        await settle()
        assert len(transport.written) == written
        assert not handler.events
        conn.data_received(client_frame(struct.pack("!H", 1003), opcode=wire.OP_CLOSE))
        assert transport.closed
        assert not transport.aborted
        assert len(transport.written) == written  # no second close frame

    async def test_a_peer_that_never_answers_our_close_is_dropped_by_the_sweep(self) -> None:
        server, _ = self._server()
        conn, transport = await self._connected(server)
        conn.close(CloseCode.GOING_AWAY)
        assert conn.closing_since is not None
        server.sweep(conn.closing_since + lean.CLOSE_TIMEOUT_S / 2)
        assert not transport.closed
        server.sweep(conn.closing_since + lean.CLOSE_TIMEOUT_S + 0.1)
        assert transport.aborted

    async def test_close_ends_the_ping_sweep_before_it_returns(self) -> None:
        server, _ = self._server()
        server.start()
        await settle()
        assert tasks_running("LeanServer._sweep")
        await server.close()
        assert not tasks_running("LeanServer._sweep")

    async def test_invalid_utf8_closes_with_1007(self) -> None:
        server, _ = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(client_frame(b'42["\xc3\x28"]'))
        assert transport.close_code() == CloseCode.INVALID_PAYLOAD

    async def test_websocket_ping_gets_a_pong(self) -> None:
        server, _ = self._server()
        conn, transport = await self._connected(server)
        conn.data_received(client_frame(b"hi", opcode=wire.OP_PING))
        await settle()
        assert (wire.OP_PONG, b"hi") in transport.frames()

    async def test_the_sweep_pings_and_drops_a_client_that_does_not_answer(self) -> None:
        server, _ = self._server(ping_interval_ms=1000, ping_timeout_ms=500)
        conn, transport = await self._connected(server)
        now = time.monotonic()
        server.sweep(now + 1.1)
        await settle()
        assert transport.packets()[-1] == "2"
        conn.data_received(text("3"))
        server.sweep(now + 1.9)
        assert not transport.was_aborted()
        server.sweep(now + 2.2)
        await settle()
        assert transport.packets()[-1] == "2"
        server.sweep(now + 2.8)
        assert transport.was_aborted()

    async def test_a_client_that_does_not_read_is_cut_off(self) -> None:
        server, _ = self._server(max_write_buffer=1000)
        conn, transport = await self._connected(server)
        transport.buffered = 1001
        conn.send(OutFrame.event("message:new", b"{}"))
        await settle()
        assert transport.was_aborted()

    async def test_connection_lost_disconnects_the_socket_once(self) -> None:
        server, handler = self._server()
        conn, _ = await self._connected(server)
        conn.connection_lost(None)
        conn.connection_lost(None)
        await settle()
        assert handler.disconnects == [conn.sid]
        assert conn.sid not in server.connections
