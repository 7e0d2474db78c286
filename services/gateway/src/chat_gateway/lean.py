"""The gateway's own WebSocket server for Engine.IO v4 / Socket.IO v5 clients.

Why not python-socketio for this path: per WebSocket it keeps about seven asyncio tasks
(aiohttp's handler, an Engine.IO writer, a new reader task per message...) and 36 KB
of RSS, and its emit makes one task per recipient (ANCHORS.md; measured here). This
server keeps no task and no timer per connection: a connection is one `asyncio.Protocol`
object with a small parse buffer, pings come from one sweep over all connections, and a
fan-out frame is built once and written to each transport as the same bytes.

The listening socket is shared with aiohttp: the first request on a connection is read
here; a WebSocket upgrade of `/socket.io/` without a session id stays here, anything
else (long-polling, upgrades of polling sessions, /healthz, /readyz) is handed, bytes
and all, to aiohttp's protocol.

Admission and fairness (issue 6): every accepted connection counts as pending, per
source address and in total, until its Socket.IO CONNECT completes, and the sweep drops
one that takes longer than the connect deadline (a request head that never ends
included). One CONNECT at a time; a second one is a protocol error. A connected
socket's events run in arrival order with back-pressure (`inbox.Inbox`): while its
inbox is full the socket is held, its reading paused and the bytes it already sent left
unparsed, and parsing resumes where it stopped once the inbox has room. Refused events
spend the socket's allowance; when it is gone, the socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import msgspec

from chat_contracts import ErrorCode
from chat_gateway import acks, handshake, wire
from chat_gateway.conn import OutFrame
from chat_gateway.inbox import Inbox
from chat_gateway.metrics import SLOW_CLIENT_CUTOFFS
from chat_gateway.policy import PendingConnections, TokenBucket, TransportPolicy
from chat_gateway.wire import CloseCode
from chat_runtime.worker import cancel_tasks

log = logging.getLogger(__name__)

#: Largest request head we read before deciding (bytes).
MAX_HEAD = 16 * 1024
#: After our close frame, how long the peer has to answer with its own (or end its side)
#: before the connection is dropped (RFC 6455 7.1.1 leaves it open; browsers and the
#: python clients answer within a loop turn; the sweep checks it once a second, so the
#: bound is 2-3 s).
CLOSE_TIMEOUT_S = 2.0


class Refused(Exception):
    """A Socket.IO CONNECT the gateway turns down (`connect_error` on the client)."""

    def __init__(self, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class Handler(Protocol):
    """What the server calls; implemented by `app.Gateway`."""

    async def connect(self, conn: LeanConnection, auth: Any) -> None:
        """Authenticate and register; raise `Refused` to turn the client down."""

    async def event(self, sid: str, event: str, data: Any) -> dict[str, Any] | None:
        """Handle one client event; the ack to send, or None for none."""

    async def disconnect(self, sid: str) -> None:
        """Forget a connected socket."""


class LeanServer:
    """Accepts connections, keeps the live ones, pings them all from one sweep."""

    def __init__(
        self,
        handler: Handler,
        policy: TransportPolicy,
        fallback: Callable[[], asyncio.Protocol],
    ) -> None:
        self.handler = handler
        self.policy = policy
        #: aiohttp's protocol factory, for connections that are not ours.
        self.fallback = fallback
        self.connections: dict[str, LeanConnection] = {}
        #: Accepted and not yet through the Socket.IO CONNECT: watched for the deadline.
        self.unauthenticated: set[LeanConnection] = set()
        self.pending = PendingConnections(policy.max_pending, policy.max_pending_per_address)
        #: Read on every flush (the fan-out path): one attribute, not two.
        self.max_write_buffer = policy.max_write_buffer
        self._open_packet_extra = msgspec.json.encode(
            {
                "upgrades": [],
                "pingInterval": policy.ping_interval_ms,
                "pingTimeout": policy.ping_timeout_ms,
                "maxPayload": policy.max_payload,
            }
        ).decode()[1:]
        self._ping_frame = wire.frame(wire.EIO_PING.encode())
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: list[LeanConnection] = []
        #: Set when the last connection is gone, while `close` waits for that.
        self._emptied: asyncio.Event | None = None

    def mark_dirty(self, conn: LeanConnection) -> None:
        """`conn` has output waiting: flush it (with all others) at the next loop turn.

        A syscall per write dominated fan-out (87 % of the gateway's CPU at 1,000
        recipients, py-spy); coalescing everything written during one loop turn into
        one write per socket turns a burst of N events into one syscall per socket.
        """
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(conn)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()

    def protocol(self) -> LeanConnection:
        """Protocol factory for `loop.create_server`."""
        return LeanConnection(self)

    def start(self) -> None:
        """Start the ping sweep."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a short-lived coroutine (one client event) and keep a reference to it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        # One pass every second covers pings, pong deadlines and handshake deadlines
        # for every connection: 10k connections cost ~3 ms a pass, and no connection
        # owns a timer.
        interval = self.policy.ping_interval_ms / 1000
        while True:
            await asyncio.sleep(min(1.0, interval / 4))
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> None:
        """One pass: pings, pong deadlines, connect deadlines."""
        interval = self.policy.ping_interval_ms / 1000
        timeout = self.policy.ping_timeout_ms / 1000
        connect_timeout = self.policy.connect_timeout_ms / 1000
        for conn in list(self.connections.values()):
            if conn.closing_since is not None:
                if now - conn.closing_since > CLOSE_TIMEOUT_S:
                    conn.abort("no close frame in answer to ours")
                continue
            if conn.ping_sent is not None:
                if now - conn.ping_sent > timeout:
                    conn.abort("ping timeout")
            elif now - conn.last_ping >= interval:
                conn.ping_sent = now
                conn.last_ping = now
                conn.write(self._ping_frame)
        # Every accepted connection, upgraded or not (a request head that never ends
        # is a slowloris), must finish the Socket.IO CONNECT within the deadline.
        for conn in list(self.unauthenticated):
            if now - conn.opened_at > connect_timeout:
                conn.abort("no Socket.IO connect in time")

    async def close(self) -> None:
        """Say goodbye to every client (1001 going away: they reconnect elsewhere)."""
        if self._sweeper is not None:
            await cancel_tasks([self._sweeper])
        for conn in list(self.connections.values()):
            conn.close(CloseCode.GOING_AWAY, "server going away")
        # The peers answer our close frames within a loop turn or two; whoever has not
        # after CLOSE_TIMEOUT_S is dropped.
        if self.connections:
            self._emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), CLOSE_TIMEOUT_S)
        for conn in list(self.connections.values()):
            conn.abort("no close frame in answer to ours")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    def open_packet(self, sid: str) -> bytes:
        """The Engine.IO OPEN packet for a new session, as a WebSocket frame."""
        return wire.frame(f'{wire.EIO_OPEN}{{"sid":"{sid}",{self._open_packet_extra}'.encode())


class LeanConnection(asyncio.Protocol):
    """One client: first an HTTP request head, then WebSocket frames."""

    __slots__ = (
        "_admitted_as",
        "_connecting",
        "_head",
        "_held",
        "_inbox",
        "_out",
        "_reader",
        "_refused",
        "closing_since",
        "deflate_threshold",
        "last_ping",
        "opened_at",
        "peer",
        "ping_sent",
        "server",
        "sid",
        "sio_connected",
        "transport",
    )

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._head: bytearray | None = bytearray()
        self._reader: wire.FrameReader | None = None
        self._out: list[bytes] | None = None
        #: Events waiting for this socket's one handler task (None: no task running).
        self._inbox: Inbox | None = None
        #: The inbox is full: nothing more is read or parsed until it has room.
        self._held = False
        self._connecting = False
        self._refused: TokenBucket | None = None
        self.sid = ""
        #: The client's address (per-address limits; behind a trusted proxy, from
        #: `X-Forwarded-For`); "" when the transport has none.
        self.peer = ""
        #: The TCP peer its pending slot is counted under.
        self._admitted_as = ""
        self.sio_connected = False
        self.deflate_threshold: int | None = None
        now = time.monotonic()
        self.opened_at = now
        self.last_ping = now
        self.ping_sent: float | None = None
        #: When our close frame went out (None: open); input is then read only to find
        #: the peer's close frame.
        self.closing_since: float | None = None

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its API.
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        # Interned: sockets from one address (a NAT, a proxy) share one string.
        self.peer = sys.intern(str(peername[0])) if isinstance(peername, tuple) else ""
        self._admitted_as = self.peer
        server = self.server
        proxy = server.policy.is_trusted_proxy(self.peer)
        if not server.pending.admit(self.peer, per_address=not proxy):
            log.warning("refusing a connection from %s: too many pending", self.peer or "?")
            self.peer = ""
            self._head = None
            # close(), not abort(): abort would drop the 503 unsent.
            self.transport.write(handshake.HTTP_503)
            self.transport.close()
            return
        server.unauthenticated.add(self)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is not None:
            reader.push(data)
            if not self._held:
                self._pump(reader)
            return
        if self._head is None:
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._reject(handshake.HTTP_400)
            return
        self._on_head(bytes(self._head[: end + 4]), bytes(self._head[end + 4 :]))

    def _pump(self, reader: wire.FrameReader) -> None:
        """Handle the received messages in order until none is complete or the inbox is
        full (`pause`): the rest stay bytes in the reader until `resume`.

        Parsing everything first cost a typing flood ~4,800 parsed events held per
        256 KiB read (12 ms of CPU, bench/flood.py) behind an inbox of 32.
        """
        while not self._held:
            try:
                message = reader.next_message()
            except wire.ProtocolError as exc:
                self.close(exc.code, exc.reason)
                # The frame boundaries are lost: what follows is read and dropped.
                self._reader = None
                return
            if message is None:
                return
            self._on_message(message)

    def pause(self) -> None:
        """The inbox is full: stop reading and parsing (TCP pushes back on the client)."""
        self._held = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume(self) -> None:
        """The inbox has room: parse on where `pause` stopped, then read again (unless
        the bytes already received filled the inbox once more)."""
        self._held = False
        if self._reader is not None:
            self._pump(self._reader)
        transport = self.transport
        if not self._held and transport is not None and not transport.is_closing():
            transport.resume_reading()

    @property
    def queued(self) -> int:
        """Parsed events waiting for (or in) this socket's handler task."""
        return 0 if self._inbox is None else len(self._inbox)

    def connection_lost(self, exc: Exception | None) -> None:
        self._authenticated()
        if self._inbox is not None:
            self._inbox.clear()
        server = self.server
        known = self.sid and server.connections.pop(self.sid, None) is not None
        if server._emptied is not None and not server.connections:
            server._emptied.set()
        if known and self.sio_connected:
            self.sio_connected = False
            self.server.spawn(self.server.handler.disconnect(self.sid))

    def _authenticated(self) -> None:
        """Leave the pending set: connected, handed over, or gone."""
        server = self.server
        if self in server.unauthenticated:
            server.unauthenticated.discard(self)
            server.pending.release(self._admitted_as)

    # --- HTTP: decide, then upgrade or hand over --------------------------------------

    def _on_head(self, head: bytes, rest: bytes) -> None:
        decision = handshake.decide(head, self.server.policy)
        if isinstance(decision, handshake.HandOver):
            self._hand_over(head + rest)
        elif isinstance(decision, handshake.Reject):
            self._reject(decision.response)
        else:
            policy = self.server.policy
            if policy.trusted_proxies:
                forwarded = decision.headers.get("x-forwarded-for")
                self.peer = sys.intern(policy.client_address(self.peer, forwarded))
            self._upgrade(decision)
            if rest:
                self.data_received(rest)

    def _hand_over(self, data: bytes) -> None:
        """Not ours: aiohttp takes the connection from its first byte."""
        assert self.transport is not None
        self._head = None
        # python-engineio owns it from here (sessions.py holds its sessions to the
        # same connect deadline).
        self._authenticated()
        protocol = self.server.fallback()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(data)

    def _upgrade(self, upgrade: handshake.Upgrade) -> None:
        assert self.transport is not None
        policy = self.server.policy
        deflate = policy.deflate and upgrade.offers_deflate()
        if deflate:
            self.deflate_threshold = policy.deflate_threshold
        self._head = None
        self._reader = wire.FrameReader(
            max_size=policy.max_payload, deflate=deflate, hard_limit=policy.max_frame
        )
        self.sid = secrets.token_urlsafe(15)
        self.server.connections[self.sid] = self
        self.transport.write(upgrade.response(deflate))
        self.transport.write(self.server.open_packet(self.sid))

    def _reject(self, response: bytes) -> None:
        assert self.transport is not None
        self._head = None
        self.transport.write(response)
        self.transport.close()

    # --- WebSocket messages -----------------------------------------------------------

    def _on_message(self, message: wire.Message) -> None:
        opcode = message.opcode
        if self.closing_since is not None:
            # Our close frame is out: only the peer's answer to it matters, and with it
            # the closing handshake is complete and the server closes TCP (7.1.1).
            if opcode == wire.OP_CLOSE and self.transport is not None:
                self.transport.close()
            return
        if opcode == wire.OP_TEXT:
            if message.oversize:
                self._on_oversize(message.text)
            else:
                self._on_engineio(message.text)
        elif opcode == wire.OP_PING:
            self.write(wire.frame(message.payload, wire.OP_PONG))
        elif opcode == wire.OP_CLOSE:
            try:
                code = wire.parse_close(message.payload)
            except wire.ProtocolError as exc:
                self.close(exc.code, exc.reason)
                return
            # Echo the peer's code (RFC 6455 section 5.5.1); the handshake is then
            # complete, so the TCP connection closes at once.
            self.close(code)
            if self.transport is not None:
                self.transport.close()
        elif opcode == wire.OP_BINARY:
            # Socket.IO binary attachments are not part of this protocol.
            self.close(CloseCode.UNSUPPORTED_DATA, "binary messages are not supported")

    def _on_oversize(self, prefix: str) -> None:
        """A message above `maxPayload`: answer it by ack id if its head says one."""
        self.strike()
        if not prefix.startswith(wire.EIO_MESSAGE):
            return
        try:
            packet = wire.parse_sio(prefix[1:])
        except ValueError:
            return
        if packet.kind == wire.SIO_EVENT and packet.ack_id is not None and self.sio_connected:
            limit = self.server.policy.max_payload
            self.ack(
                packet.ack_id,
                acks.error(ErrorCode.VALIDATION_ERROR, f"payload too large: over {limit} bytes"),
            )

    def _on_engineio(self, text: str) -> None:
        kind, body = text[:1], text[1:]
        if kind == wire.EIO_PONG:
            self.ping_sent = None
        elif kind == wire.EIO_MESSAGE:
            self._on_socketio(body)
        elif kind == wire.EIO_CLOSE:
            self.close(CloseCode.NORMAL)
        elif kind == wire.EIO_PING:
            # A v3-style client ping: answer so it does not time out.
            self.write(wire.frame((wire.EIO_PONG + body).encode()))

    def _on_socketio(self, text: str) -> None:
        try:
            packet = wire.parse_sio(text)
        except wire.UnsupportedPacket as exc:
            self.close(CloseCode.UNSUPPORTED_DATA, str(exc))
            return
        except ValueError:
            self.close(CloseCode.PROTOCOL_ERROR, "bad Socket.IO packet")
            return
        if packet.namespace != "/":
            if packet.kind == wire.SIO_CONNECT:
                error = '{"message":"Invalid namespace"}'
                self.send_text(f"{wire.SIO_CONNECT_ERROR}{packet.namespace},{error}")
                return
            # As on the long-polling path (sio.py): refused, counted, and acked where
            # the packet asks for an ack.
            self.strike()
            if packet.ack_id is not None and self.sio_connected:
                reason = f"unknown namespace {packet.namespace}"
                self.ack(packet.ack_id, acks.error(ErrorCode.VALIDATION_ERROR, reason))
            return
        kind = packet.kind
        if kind == wire.SIO_EVENT:
            if self.sio_connected:
                self._enqueue(packet)
        elif kind == wire.SIO_CONNECT:
            if self.sio_connected or self._connecting:
                # One handshake per socket: a second one would register the socket
                # twice (and leave one registration behind).
                self.close(CloseCode.PROTOCOL_ERROR, "already connected")
                return
            self._connecting = True
            self.server.spawn(self._connect(packet.data))
        elif kind == wire.SIO_DISCONNECT and self.sio_connected:
            self.sio_connected = False
            self.server.spawn(self.server.handler.disconnect(self.sid))

    # --- handshake and events ---------------------------------------------------------

    async def _connect(self, data: str) -> None:
        try:
            try:
                auth = msgspec.json.decode(data) if data else None
            except (msgspec.DecodeError, RecursionError):
                auth = None
            await self.server.handler.connect(self, auth)
        except Refused as exc:
            self._connect_error(exc.message, exc.data)
            return
        except Exception:
            log.exception("handshake of %s failed", self.sid)
            self._connect_error("internal error", {"code": ErrorCode.INTERNAL.value})
            return
        finally:
            self._connecting = False
        if self.transport is None or self.transport.is_closing() or self.closing_since is not None:
            # Gone while we authenticated: undo the registration.
            await self.server.handler.disconnect(self.sid)
            return
        self.sio_connected = True
        self._authenticated()
        self.send_text(wire.SIO_CONNECT + _json({"sid": self.sid}))

    def _connect_error(self, message: str, data: dict[str, Any]) -> None:
        self.send_text(wire.SIO_CONNECT_ERROR + _json({"message": message, "data": data}))

    def _enqueue(self, packet: wire.SioPacket) -> None:
        """Events run one at a time, in arrival order, on one task per busy socket."""
        inbox = self._inbox
        if inbox is None:
            handler = self.server.handler
            self._inbox = Inbox(self, handler, self.server.policy.max_in_flight, packet)
            self.server.spawn(self._drain(self._inbox))
        else:
            inbox.put(packet)

    async def _drain(self, inbox: Inbox) -> None:
        try:
            await inbox.drain()
        finally:
            if self._inbox is inbox:
                self._inbox = None

    def ack(self, ack_id: int, ack: dict[str, Any]) -> None:
        """Send the ack of the event with this id."""
        self.send_text(f"{wire.SIO_ACK}{ack_id}{_json([ack])}")

    def strike(self) -> None:
        """Count one refused event; close a socket that keeps sending them."""
        bucket = self._refused
        if bucket is None:
            per_min = self.server.policy.refused_per_min
            bucket = self._refused = TokenBucket(per_min / 60, per_min)
        if not bucket.take():
            log.info("closing %s: too many refused events", self.sid)
            self.close(CloseCode.POLICY_VIOLATION, "too many invalid events")

    # --- output -----------------------------------------------------------------------

    def send(self, frame: OutFrame) -> None:
        """A fan-out frame (prepared once for all recipients)."""
        self.write(frame.ws(self.deflate_threshold))

    def send_text(self, socketio_packet: str) -> None:
        """One Socket.IO packet for this client only."""
        self.send(OutFrame(socketio_packet))

    def write(self, data: bytes) -> None:
        """Queue bytes for this loop turn's flush (order kept per connection)."""
        if self._out is None:
            self._out = [data]
            self.server.mark_dirty(self)
        else:
            self._out.append(data)

    def flush(self) -> None:
        """Write what this loop turn queued, cutting off a client that does not read."""
        out, self._out = self._out, None
        transport = self.transport
        if not out or transport is None or transport.is_closing() or self.closing_since is not None:
            return
        limit = self.server.max_write_buffer
        if transport.get_write_buffer_size() > limit:
            log.warning("closing slow client %s (%d bytes unsent)", self.sid, limit)
            SLOW_CLIENT_CUTOFFS.inc()
            transport.abort()
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake with a status code (RFC 6455 7.1.2).

        The close frame goes out with a FIN after it (half-close), and the connection
        stays readable until the peer's close frame or end of input arrives (or
        `CLOSE_TIMEOUT_S` passes, the sweep drops it). Closing at once would leave the
        peer's in-flight bytes unread: the kernel then answers with RST, which can
        destroy the close frame before the client reads it (it sees 1006, not `code`).
        The socket leaves Socket.IO at once: nothing more is sent or handled.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self.closing_since is not None:
            return
        self.flush()
        transport.write(wire.close_frame(code, reason))
        self.closing_since = time.monotonic()
        if transport.can_write_eof():
            transport.write_eof()
        # Reading may be paused by back-pressure; the peer's close frame must be read
        # (the bytes held unparsed are parsed, and dropped, on the next read).
        self._held = False
        transport.resume_reading()
        if self._inbox is not None:
            self._inbox.clear()
        if self.sio_connected:
            self.sio_connected = False
            self.server.spawn(self.server.handler.disconnect(self.sid))

    def abort(self, reason: str) -> None:
        """Drop a dead or stuck client."""
        log.info("dropping %s: %s", self.sid or self.peer, reason)
        if self.transport is not None:
            self.transport.abort()


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
