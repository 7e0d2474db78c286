"""WebSocket (RFC 6455 + RFC 7692) and Engine.IO v4 / Socket.IO v5 framing, without I/O.

The gateway's WebSocket path speaks these directly (see `lean.py`): one server→client
frame is built once and the same bytes are written to every recipient, since server
frames are unmasked. Compression uses permessage-deflate with *no context takeover* in
both directions: each message is deflated on its own, so a fan-out frame is compressed
once for all recipients and no socket keeps a zlib context (tens of KB each otherwise).
"""

from __future__ import annotations

import base64
import enum
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
_CONTROL_OPCODES: Final = frozenset((OP_CLOSE, OP_PING, OP_PONG))


class CloseCode(enum.IntEnum):
    """WebSocket close status codes (RFC 6455 section 7.4.1) the gateway sends or checks."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    #: Reserved: never on the wire (1005 "no status", 1006 "abnormal", 1015 "TLS").
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


#: Codes a peer may put in a close frame: the defined ones that are not reserved for
#: local use, plus 3000-4999 (registered and private).
_SENDABLE: Final = frozenset(CloseCode) - {
    CloseCode.NO_STATUS,
    CloseCode.ABNORMAL,
    CloseCode.TLS_HANDSHAKE,
}

#: Fragments one message may arrive in. Browsers send a message as one frame; a client
#: library streaming in 4 KiB pieces fits 1 MiB in 256, so 1,024 is generous. Without a
#: cap, 900k one-byte fragments cost ~50 MB of per-fragment objects (issue 6).
MAX_FRAGMENTS: Final = 1_024
#: Empty non-final fragments tolerated per message (they carry nothing but cost a parse).
MAX_EMPTY_FRAGMENTS: Final = 4
#: Bytes of an oversize message kept so the gateway can still read its ack id.
OVERSIZE_PREFIX: Final = 64

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
        raise ProtocolError(CloseCode.INVALID_PAYLOAD, f"bad deflate data: {exc}") from None
    if len(out) > limit or decomp.unconsumed_tail:
        raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message too big")
    return out


def inflate_bounded(payload: bytes, limit: int, hard_limit: int) -> tuple[bytes, bool]:
    """Decompress one client message: (message, False) within `limit`; (its first
    `OVERSIZE_PREFIX` bytes, True) when it inflates beyond `limit` but not beyond
    `hard_limit`; `ProtocolError(1009)` beyond that (a deflate bomb). The part past
    `limit` is inflated in 64 KiB steps and thrown away, so memory stays at `limit`."""
    decomp = zlib.decompressobj(-15)
    try:
        out = decomp.decompress(payload + _DEFLATE_TAIL, limit + 1)
        if len(out) <= limit and not decomp.unconsumed_tail:
            return out, False
        total = len(out)
        while decomp.unconsumed_tail and total <= hard_limit:
            total += len(decomp.decompress(decomp.unconsumed_tail, 1 << 16))
    except zlib.error as exc:
        raise ProtocolError(CloseCode.INVALID_PAYLOAD, f"bad deflate data: {exc}") from None
    if total > hard_limit:
        raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message too big")
    return out[:OVERSIZE_PREFIX], True


def unmask(mask: bytes, data: bytes) -> bytes:
    """XOR the client's masking key over the payload (big-int trick: no Python loop)."""
    n = len(data)
    if n == 0:
        return data
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


@dataclass(slots=True)
class Message:
    """One complete client message (or control frame).

    `text` is the decoded payload of a text message (checked UTF-8). `oversize` marks a
    message above the reader's `max_size` but within `hard_limit`: its payload is only
    the first `OVERSIZE_PREFIX` bytes, enough to answer it by ack id.
    """

    opcode: int
    payload: bytes
    text: str = ""
    oversize: bool = False


_FRAGMENT: Final = Message(-1, b"")


@dataclass(slots=True)
class FrameReader:
    """Incremental parser of client→server frames (masked, possibly fragmented).

    Holds only the unparsed tail and, while a fragmented message is in flight, one
    buffer with its bytes so far: an idle connection keeps an empty bytearray.
    Messages up to `max_size` are returned whole; larger ones up to `hard_limit`
    (default: `max_size`) come back truncated and flagged `oversize`; beyond that the
    reader raises `ProtocolError(1009)`.
    """

    max_size: int
    deflate: bool = False
    hard_limit: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _parts: bytearray | None = None
    _parts_opcode: int = 0
    _parts_compressed: bool = False
    _fragments: int = 0
    _empty_fragments: int = 0

    def __post_init__(self) -> None:
        self.hard_limit = max(self.hard_limit, self.max_size)

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the messages they complete."""
        self.push(data)
        out: list[Message] = []
        while (msg := self.next_message()) is not None:
            out.append(msg)
        return out

    def push(self, data: bytes) -> None:
        """Add received bytes, unparsed until `next_message` asks for them."""
        self._buf += data

    def next_message(self) -> Message | None:
        """The next complete message of the bytes pushed so far (None: none complete).

        One message at a time, so that a reader can stop where its consumer is full and
        leave the rest as bytes (lean.py: a flooding socket's 256 KiB read was ~4,800
        events parsed and held at once).
        """
        while True:
            msg = self._next()
            if msg is not _FRAGMENT:
                return msg

    @property
    def buffered(self) -> int:
        """Bytes pushed and not yet parsed."""
        return len(self._buf)

    def _next(self) -> Message | None:
        """The next message; `_FRAGMENT` for a frame that only starts or continues one;
        None when the buffer holds no complete frame."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        fin, rsv1, opcode = b0 & 0x80, b0 & 0x40, b0 & 0x0F
        if b0 & 0x30 or (rsv1 and not self.deflate):
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "reserved bits set")
        if opcode >= OP_CLOSE and opcode not in _CONTROL_OPCODES:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
        if rsv1 and (opcode >= OP_CLOSE or opcode == OP_CONTINUATION):
            # RFC 7692 section 6: RSV1 only on the first frame of a data message.
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "RSV1 on a control or continuation")
        if not b1 & 0x80:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
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
        if length > self.hard_limit:
            raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message too big")
        if len(buf) < pos + 4 + length:
            return None
        mask = bytes(buf[pos : pos + 4])
        payload = unmask(mask, bytes(buf[pos + 4 : pos + 4 + length]))
        del buf[: pos + 4 + length]
        if opcode >= OP_CLOSE:
            if not fin or length > 125:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "bad control frame")
            return Message(opcode, payload)
        return self._data(opcode, bool(fin), bool(rsv1), payload)

    def _data(self, opcode: int, fin: bool, rsv1: bool, payload: bytes) -> Message | None:
        if opcode == OP_CONTINUATION:
            parts = self._parts
            if parts is None:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "continuation without a start")
            self._fragments += 1
            if self._fragments > MAX_FRAGMENTS:
                raise ProtocolError(CloseCode.POLICY_VIOLATION, "too many fragments")
            if not payload and not fin:
                self._empty_fragments += 1
                if self._empty_fragments > MAX_EMPTY_FRAGMENTS:
                    raise ProtocolError(CloseCode.POLICY_VIOLATION, "too many empty fragments")
            parts += payload
        else:
            if self._parts is not None:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
            if opcode not in (OP_TEXT, OP_BINARY):
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if fin:
                return self._finish(opcode, rsv1, payload)
            parts = self._parts = bytearray(payload)
            self._parts_opcode, self._parts_compressed = opcode, rsv1
            self._fragments, self._empty_fragments = 1, 0
        if len(parts) > self.hard_limit:
            raise ProtocolError(CloseCode.MESSAGE_TOO_BIG, "message too big")
        if not fin:
            return _FRAGMENT
        self._parts = None
        return self._finish(self._parts_opcode, self._parts_compressed, bytes(parts))

    def _finish(self, opcode: int, compressed: bool, payload: bytes) -> Message:
        if compressed:
            payload, oversize = inflate_bounded(payload, self.max_size, self.hard_limit)
        else:
            oversize = len(payload) > self.max_size
        if oversize:
            payload = payload[:OVERSIZE_PREFIX]
            # A cut may split a UTF-8 sequence: the prefix is only read for its head.
            text = payload.decode("utf-8", "ignore") if opcode == OP_TEXT else ""
            return Message(opcode, payload, text, oversize=True)
        if opcode == OP_TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                raise ProtocolError(
                    CloseCode.INVALID_PAYLOAD, "invalid UTF-8 in a text message"
                ) from None
            return Message(opcode, payload, text)
        return Message(opcode, payload)


def parse_close(payload: bytes) -> int:
    """The status code of a client's close frame (1005 when it has none).

    Raises `ProtocolError` for a malformed close frame: one byte of payload, a code a
    peer must not send, or a reason that is not UTF-8 (RFC 6455 sections 5.5.1, 7.4).
    """
    if not payload:
        return CloseCode.NO_STATUS
    if len(payload) == 1:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte body")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_PAYLOAD, "close reason is not UTF-8") from None
    return code


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with a status code (an empty one for 1005: no status to echo)."""
    if code == CloseCode.NO_STATUS:
        return frame(b"", OP_CLOSE)
    # 123 bytes at most (a control frame carries 125); cut on a character boundary.
    body = reason.encode()[:123].decode("utf-8", "ignore").encode()
    return frame(struct.pack("!H", code) + body, OP_CLOSE)


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


#: Socket.IO binary packet types: attachments are not part of this protocol.
SIO_BINARY_EVENT: Final = "5"
SIO_BINARY_ACK: Final = "6"
#: Ack ids are counters; 15 digits is far beyond any client's count and keeps `int()`
#: away from the quadratic path of very long digit strings.
_MAX_ACK_DIGITS: Final = 15


class UnsupportedPacket(ValueError):
    """A well-formed Socket.IO packet of a kind this gateway does not take (binary)."""


def parse_sio(text: str) -> SioPacket:
    """Split `<type>[/nsp,][id]<json>` (the Socket.IO v5 text encoding)."""
    if not text:
        raise ValueError("empty packet")
    kind = text[0]
    if kind in (SIO_BINARY_EVENT, SIO_BINARY_ACK):
        raise UnsupportedPacket("Socket.IO binary packets are not supported")
    if kind not in "01234":
        raise ValueError(f"unknown packet type {kind!r}")
    rest = text[1:]
    namespace = "/"
    if rest.startswith("/"):
        comma = rest.find(",")
        namespace, rest = (rest, "") if comma < 0 else (rest[:comma], rest[comma + 1 :])
    digits = 0
    # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
    while digits < len(rest) and "0" <= rest[digits] <= "9":
        digits += 1
    if digits > _MAX_ACK_DIGITS:
        raise ValueError("ack id too long")
    ack_id = int(rest[:digits]) if digits else None
    return SioPacket(kind, namespace, ack_id, rest[digits:])
