"""WebSocket (RFC 6455 + RFC 7692) and Engine.IO v4 / Socket.IO v5 framing, without I/O.

The gateway's WebSocket path speaks these directly (see `lean.py`): one server→client
frame is built once and the same bytes are written to every recipient, since server
frames are unmasked. Compression uses permessage-deflate with *no context takeover* in
both directions: each message is deflated on its own, so a fan-out frame is compressed
once for all recipients and no socket keeps a zlib context (tens of KB each otherwise).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Final

WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

#: The response header that accepts permessage-deflate on our terms.
DEFLATE_RESPONSE: Final = (
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
)
_DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"


class ProtocolError(Exception):
    """The peer broke the WebSocket protocol; `code` is the close code to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    """`Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def offers_deflate(extensions: str) -> bool:
    """Whether a `Sec-WebSocket-Extensions` header offers permessage-deflate."""
    return any(
        offer.split(";")[0].strip().lower() == "permessage-deflate"
        for offer in extensions.split(",")
    )


def frame(payload: bytes, opcode: int = OP_TEXT, rsv1: bool = False) -> bytes:
    """One unmasked, final server→client frame."""
    first = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def deflate(payload: bytes, level: int = 6) -> bytes:
    """A message compressed on its own (no context takeover), RFC 7692 tail removed."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = comp.compress(payload) + comp.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(_DEFLATE_TAIL) else out


def inflate(payload: bytes, limit: int) -> bytes:
    """Decompress one client message; refuse one that inflates beyond `limit` bytes."""
    decomp = zlib.decompressobj(-15)
    try:
        out = decomp.decompress(payload + _DEFLATE_TAIL, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(1007, f"bad deflate data: {exc}") from None
    if len(out) > limit or decomp.unconsumed_tail:
        raise ProtocolError(1009, "message too big")
    return out


def unmask(mask: bytes, data: bytes) -> bytes:
    """XOR the client's masking key over the payload (big-int trick: no Python loop)."""
    n = len(data)
    if n == 0:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


@dataclass(slots=True)
class Message:
    """One complete client message (or control frame)."""

    opcode: int
    payload: bytes


_FRAGMENT: Final = Message(-1, b"")


@dataclass(slots=True)
class FrameReader:
    """Incremental parser of client→server frames (masked, possibly fragmented).

    Holds only the unparsed tail and, while a fragmented message is in flight, its
    parts: an idle connection keeps an empty bytearray.
    """

    max_size: int
    deflate: bool = False
    _buf: bytearray = field(default_factory=bytearray)
    _parts: list[bytes] | None = None
    _parts_opcode: int = 0
    _parts_compressed: bool = False
    _parts_size: int = 0

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the messages they complete."""
        self._buf += data
        out: list[Message] = []
        while True:
            msg = self._next()
            if msg is None:
                return out
            if msg is not _FRAGMENT:
                out.append(msg)

    def _next(self) -> Message | None:
        """The next message; `_FRAGMENT` for a frame that only starts or continues one;
        None when the buffer holds no complete frame."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        fin, rsv1, opcode = b0 & 0x80, b0 & 0x40, b0 & 0x0F
        if b0 & 0x30 or (rsv1 and not self.deflate):
            raise ProtocolError(1002, "reserved bits set")
        if not b1 & 0x80:
            raise ProtocolError(1002, "client frames must be masked")
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = int.from_bytes(buf[2:4], "big")
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = int.from_bytes(buf[2:10], "big")
            pos = 10
        if length > self.max_size:
            raise ProtocolError(1009, "message too big")
        if len(buf) < pos + 4 + length:
            return None
        mask = bytes(buf[pos : pos + 4])
        payload = unmask(mask, bytes(buf[pos + 4 : pos + 4 + length]))
        del buf[: pos + 4 + length]
        if opcode >= OP_CLOSE:
            if not fin or length > 125:
                raise ProtocolError(1002, "bad control frame")
            return Message(opcode, payload)
        return self._data(opcode, bool(fin), bool(rsv1), payload)

    def _data(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> Message | None:
        if opcode == OP_CONTINUATION:
            if self._parts is None:
                raise ProtocolError(1002, "continuation without a start")
            self._parts.append(payload)
            self._parts_size += len(payload)
        else:
            if self._parts is not None:
                raise ProtocolError(1002, "new message inside a fragmented one")
            if opcode not in (OP_TEXT, OP_BINARY):
                raise ProtocolError(1002, f"unknown opcode {opcode}")
            if fin:
                return self._finish(opcode, rsv1, payload)
            self._parts, self._parts_opcode = [payload], opcode
            self._parts_compressed, self._parts_size = rsv1, len(payload)
        if self._parts_size > self.max_size:
            raise ProtocolError(1009, "message too big")
        if not fin:
            return _FRAGMENT
        whole = b"".join(self._parts)
        opcode, compressed = self._parts_opcode, self._parts_compressed
        self._parts = None
        return self._finish(opcode, compressed, whole)

    def _finish(self, opcode: int, compressed: bool, payload: bytes) -> Message:
        if compressed:
            payload = inflate(payload, self.max_size)
        return Message(opcode, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with a status code."""
    return frame(struct.pack("!H", code) + reason.encode()[:120], OP_CLOSE)


# --- Engine.IO v4 / Socket.IO v5 ------------------------------------------------------

EIO_OPEN: Final = "0"
EIO_CLOSE: Final = "1"
EIO_PING: Final = "2"
EIO_PONG: Final = "3"
EIO_MESSAGE: Final = "4"

SIO_CONNECT: Final = "0"
SIO_DISCONNECT: Final = "1"
SIO_EVENT: Final = "2"
SIO_ACK: Final = "3"
SIO_CONNECT_ERROR: Final = "4"


@dataclass(slots=True)
class SioPacket:
    """A decoded Socket.IO packet of the default namespace (`data` still JSON text)."""

    kind: str
    namespace: str
    ack_id: int | None
    data: str


def parse_sio(text: str) -> SioPacket:
    """Split `<type>[/nsp,][id]<json>` (the Socket.IO v5 text encoding)."""
    if not text:
        raise ValueError("empty packet")
    kind = text[0]
    if kind not in "0123456":
        raise ValueError(f"unknown packet type {kind!r}")
    rest = text[1:]
    namespace = "/"
    if rest.startswith("/"):
        comma = rest.find(",")
        namespace, rest = (rest, "") if comma < 0 else (rest[:comma], rest[comma + 1 :])
    digits = 0
    while digits < len(rest) and rest[digits].isdigit():
        digits += 1
    ack_id = int(rest[:digits]) if digits else None
    return SioPacket(kind, namespace, ack_id, rest[digits:])
