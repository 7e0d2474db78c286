"""A raw WebSocket + Engine.IO/Socket.IO client for hostile-input tests: it writes any
bytes it is given (broken frames, bad UTF-8, fragments, binary) and reads what the
server answers, frame by frame, without trusting or fixing anything."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(
    payload: bytes,
    opcode: int = OP_TEXT,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame; `length` overrides the declared payload length."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


@dataclass
class ServerFrame:
    """One frame from the server."""

    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (None when it has none)."""
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code


class RawSocket:
    """One TCP connection upgraded to WebSocket on `/socket.io/`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        #: The connection ended (EOF or reset); None from `frame` meant that.
        self.ended = False

    @classmethod
    async def open(cls, url: str, local_host: str | None = None) -> RawSocket:
        """TCP connect and the WebSocket upgrade (no extension offered); after it the
        Engine.IO OPEN packet is waiting."""
        host, port = url.removeprefix("http://").split(":")
        local = (local_host, 0) if local_host else None
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=local)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        return cls(reader, writer)

    async def connect(self, token: str) -> str:
        """Engine.IO OPEN, then Socket.IO CONNECT with the token; the CONNECT answer."""
        opened = await self.next_text(10)
        assert opened.startswith("0"), opened
        self.send_text("40" + json.dumps({"token": token}))
        return await self.next_text(10)

    def send(self, data: bytes) -> None:
        """Raw bytes onto the connection."""
        self.writer.write(data)

    def send_text(self, text: str) -> None:
        """One well-formed, masked text frame."""
        self.writer.write(client_frame(text.encode()))

    async def frame(self, timeout: float) -> ServerFrame | None:
        """The next server frame; None when none came in time or the connection ended
        (then `ended` is set)."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        except TimeoutError:
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            self.ended = True
            return None
        try:
            b0, b1 = head
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.ended = True
            return None
        return ServerFrame(b0 & 0x0F, payload)

    async def next_text(self, timeout: float) -> str:
        """The next text frame's payload, answering Engine.IO pings on the way."""
        while True:
            frame = await self.frame(timeout)
            if frame is None:
                raise ConnectionError("connection ended")
            if frame.opcode == OP_CLOSE:
                raise ConnectionError(f"closed {frame.close_code}")
            if frame.opcode != OP_TEXT:
                continue
            text = frame.payload.decode()
            if text == "2":
                self.send_text("3")
                continue
            return text

    async def close(self) -> None:
        """Close the TCP connection."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
