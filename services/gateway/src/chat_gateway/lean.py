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
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import msgspec

from chat_gateway import wire
from chat_gateway.conn import OutFrame

log = logging.getLogger(__name__)

#: Largest request head we read before deciding (bytes).
MAX_HEAD = 16 * 1024
#: A client whose unsent output exceeds this is too slow: cut it off (it will reconnect
#: and `sync`) rather than buffer without bound (bytes).
MAX_WRITE_BUFFER = 4 * 1024 * 1024


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


@dataclass(frozen=True, slots=True)
class LeanSettings:
    """Transport knobs (Engine.IO defaults; PROTOCOL.md's deflate threshold)."""

    allowed_origins: tuple[str, ...]
    ping_interval_ms: int = 25_000
    ping_timeout_ms: int = 20_000
    connect_timeout_ms: int = 10_000
    max_payload: int = 1_000_000
    #: Frames above this many bytes are deflated for clients that negotiated it.
    deflate_threshold: int = 1_024
    deflate: bool = True


class LeanServer:
    """Accepts connections, keeps the live ones, pings them all from one sweep."""

    def __init__(
        self,
        handler: Handler,
        settings: LeanSettings,
        fallback: Callable[[], asyncio.Protocol],
    ) -> None:
        self.handler = handler
        self.settings = settings
        #: aiohttp's protocol factory, for connections that are not ours.
        self.fallback = fallback
        self.connections: dict[str, LeanConnection] = {}
        self._open_packet_extra = msgspec.json.encode(
            {
                "upgrades": [],
                "pingInterval": settings.ping_interval_ms,
                "pingTimeout": settings.ping_timeout_ms,
                "maxPayload": settings.max_payload,
            }
        ).decode()[1:]
        self._ping_frame = wire.frame(wire.EIO_PING.encode())
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: list[LeanConnection] = []

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
        interval = self.settings.ping_interval_ms / 1000
        timeout = self.settings.ping_timeout_ms / 1000
        connect_timeout = self.settings.connect_timeout_ms / 1000
        while True:
            await asyncio.sleep(min(1.0, interval / 4))
            now = time.monotonic()
            for conn in list(self.connections.values()):
                if conn.ping_sent is not None:
                    if now - conn.ping_sent > timeout:
                        conn.abort("ping timeout")
                elif now - conn.last_ping >= interval:
                    conn.ping_sent = now
                    conn.last_ping = now
                    conn.write(self._ping_frame)
                if not conn.sio_connected and now - conn.opened_at > connect_timeout:
                    conn.abort("no Socket.IO connect")

    async def close(self) -> None:
        """Say goodbye to every client (1001 going away: they reconnect elsewhere)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections.values()):
            conn.close(1001, "server going away")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    def open_packet(self, sid: str) -> bytes:
        """The Engine.IO OPEN packet for a new session, as a WebSocket frame."""
        return wire.frame(f'{wire.EIO_OPEN}{{"sid":"{sid}",{self._open_packet_extra}'.encode())


_HTTP_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_HTTP_403 = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class LeanConnection(asyncio.Protocol):
    """One client: first an HTTP request head, then WebSocket frames."""

    __slots__ = (
        "_head",
        "_out",
        "_reader",
        "deflate_threshold",
        "last_ping",
        "opened_at",
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
        self.sid = ""
        self.sio_connected = False
        self.deflate_threshold: int | None = None
        now = time.monotonic()
        self.opened_at = now
        self.last_ping = now
        self.ping_sent: float | None = None

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its API.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._reader is not None:
            try:
                messages = self._reader.feed(data)
            except wire.ProtocolError as exc:
                self.close(exc.code, exc.reason)
                return
            for message in messages:
                self._on_message(message)
            return
        assert self._head is not None
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._reject(_HTTP_400)
            return
        self._on_head(bytes(self._head[: end + 4]), bytes(self._head[end + 4 :]))

    def connection_lost(self, exc: Exception | None) -> None:
        known = self.sid and self.server.connections.pop(self.sid, None) is not None
        if known and self.sio_connected:
            self.sio_connected = False
            self.server.spawn(self.server.handler.disconnect(self.sid))

    # --- HTTP: decide, then upgrade or hand over --------------------------------------

    def _on_head(self, head: bytes, rest: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        target = urlsplit(parts[1]) if len(parts) == 3 else None
        query = parse_qs(target.query) if target else {}
        lean = (
            target is not None
            and parts[0] == "GET"
            and target.path.rstrip("/") == "/socket.io"
            and query.get("transport") == ["websocket"]
            and "sid" not in query
            and headers.get("upgrade", "").lower() == "websocket"
        )
        if not lean:
            self._hand_over(head + rest)
            return
        if query.get("EIO") != ["4"] or "sec-websocket-key" not in headers:
            self._reject(_HTTP_400)
            return
        origin = headers.get("origin")
        allowed = self.server.settings.allowed_origins
        if origin is not None and "*" not in allowed and origin not in allowed:
            self._reject(_HTTP_403)
            return
        self._upgrade(headers)
        if rest:
            self.data_received(rest)

    def _hand_over(self, data: bytes) -> None:
        """Not ours: aiohttp takes the connection from its first byte."""
        assert self.transport is not None
        self._head = None
        protocol = self.server.fallback()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(data)

    def _upgrade(self, headers: dict[str, str]) -> None:
        assert self.transport is not None
        settings = self.server.settings
        deflate = settings.deflate and wire.offers_deflate(
            headers.get("sec-websocket-extensions", "")
        )
        response = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {wire.accept_key(headers['sec-websocket-key'])}",
        ]
        if deflate:
            response.append(f"Sec-WebSocket-Extensions: {wire.DEFLATE_RESPONSE}")
            self.deflate_threshold = settings.deflate_threshold
        self._head = None
        self._reader = wire.FrameReader(max_size=settings.max_payload, deflate=deflate)
        self.sid = secrets.token_urlsafe(15)
        self.server.connections[self.sid] = self
        self.transport.write(("\r\n".join(response) + "\r\n\r\n").encode())
        self.transport.write(self.server.open_packet(self.sid))

    def _reject(self, response: bytes) -> None:
        assert self.transport is not None
        self._head = None
        self.transport.write(response)
        self.transport.close()

    # --- WebSocket messages -----------------------------------------------------------

    def _on_message(self, message: wire.Message) -> None:
        if message.opcode == wire.OP_TEXT:
            self._on_engineio(message.payload.decode("utf-8", "replace"))
        elif message.opcode == wire.OP_PING:
            self.write(wire.frame(message.payload, wire.OP_PONG))
        elif message.opcode == wire.OP_CLOSE:
            self.close(1000)
        elif message.opcode == wire.OP_BINARY:
            # Socket.IO binary attachments are not part of this protocol.
            self.close(1003, "binary messages are not supported")

    def _on_engineio(self, text: str) -> None:
        kind, body = text[:1], text[1:]
        if kind == wire.EIO_PONG:
            self.ping_sent = None
        elif kind == wire.EIO_MESSAGE:
            self._on_socketio(body)
        elif kind == wire.EIO_CLOSE:
            self.close(1000)
        elif kind == wire.EIO_PING:
            # A v3-style client ping: answer so it does not time out.
            self.write(wire.frame((wire.EIO_PONG + body).encode()))

    def _on_socketio(self, text: str) -> None:
        try:
            packet = wire.parse_sio(text)
        except ValueError:
            self.close(1002, "bad Socket.IO packet")
            return
        if packet.namespace != "/":
            if packet.kind == wire.SIO_CONNECT:
                error = '{"message":"Invalid namespace"}'
                self.send_text(f"{wire.SIO_CONNECT_ERROR}{packet.namespace},{error}")
            return
        if packet.kind == wire.SIO_CONNECT:
            if not self.sio_connected:
                self.server.spawn(self._connect(packet.data))
        elif packet.kind == wire.SIO_EVENT and self.sio_connected:
            self.server.spawn(self._event(packet))
        elif packet.kind == wire.SIO_DISCONNECT and self.sio_connected:
            self.sio_connected = False
            self.server.spawn(self.server.handler.disconnect(self.sid))

    async def _connect(self, data: str) -> None:
        try:
            auth = msgspec.json.decode(data) if data else None
        except msgspec.DecodeError:
            auth = None
        try:
            await self.server.handler.connect(self, auth)
        except Refused as exc:
            payload = _json({"message": exc.message, "data": exc.data})
            self.send_text(wire.SIO_CONNECT_ERROR + payload)
            return
        if self.transport is None or self.transport.is_closing():
            # Gone while we authenticated: undo the registration.
            await self.server.handler.disconnect(self.sid)
            return
        self.sio_connected = True
        self.send_text(wire.SIO_CONNECT + _json({"sid": self.sid}))

    async def _event(self, packet: wire.SioPacket) -> None:
        # The payload stays raw JSON here: the gateway decodes it straight into the
        # event's contract Struct (one pass, no intermediate dicts).
        try:
            args: list[Any] | None = _event_args.decode(packet.data)
        except msgspec.DecodeError:
            args = None
        if not args:
            ack: dict[str, Any] | None = {
                "status": "error",
                "code": "VALIDATION_ERROR",
                "error": "malformed event packet",
            }
        else:
            name = msgspec.json.decode(args[0])
            if not isinstance(name, str):
                name = ""
            ack = await self.server.handler.event(
                self.sid, name, args[1] if len(args) > 1 else None
            )
        if packet.ack_id is not None and ack is not None:
            self.send_text(f"{wire.SIO_ACK}{packet.ack_id}{_json([ack])}")

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
        if not out or transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("closing slow client %s (%d bytes unsent)", self.sid, MAX_WRITE_BUFFER)
            transport.abort()
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket with a status code."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.flush()
            transport.write(wire.close_frame(code, reason))
            transport.close()

    def abort(self, reason: str) -> None:
        """Drop a dead or stuck client."""
        log.info("dropping %s: %s", self.sid, reason)
        if self.transport is not None:
            self.transport.abort()


_event_args = msgspec.json.Decoder(list[msgspec.Raw])


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
