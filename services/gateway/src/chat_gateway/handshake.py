"""The first HTTP request on a connection: a WebSocket for the lean server, aiohttp's
business, or refused. Pure: bytes and the policy in, a decision out (`lean.py` acts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from chat_gateway import wire
from chat_gateway.policy import TransportPolicy

#: The only WebSocket version there is (RFC 6455 section 4.1).
WS_VERSION: Final = "13"

_CLOSE: Final = b"Content-Length: 0\r\nConnection: close\r\n\r\n"
HTTP_400: Final = b"HTTP/1.1 400 Bad Request\r\n" + _CLOSE
HTTP_403: Final = b"HTTP/1.1 403 Forbidden\r\n" + _CLOSE
#: RFC 6455 section 4.4: name the version we speak.
HTTP_426: Final = b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n" + _CLOSE
HTTP_503: Final = b"HTTP/1.1 503 Service Unavailable\r\n" + _CLOSE


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A WebSocket for Engine.IO v4: answer 101 and serve it here."""

    #: Header names lower-cased.
    headers: dict[str, str]

    def response(self, deflate: bool) -> bytes:
        """The 101 response (with our permessage-deflate terms when `deflate`)."""
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {wire.accept_key(self.headers['sec-websocket-key'])}",
        ]
        if deflate:
            lines.append(f"Sec-WebSocket-Extensions: {wire.DEFLATE_RESPONSE}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def offers_deflate(self) -> bool:
        """Whether the client offered permessage-deflate."""
        return wire.offers_deflate(self.headers.get("sec-websocket-extensions", ""))


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse with this HTTP response and close."""

    response: bytes


@dataclass(frozen=True, slots=True)
class HandOver:
    """Not ours (long-polling, upgrades of polling sessions, health): aiohttp's."""


Decision = Upgrade | Reject | HandOver


def decide(head: bytes, policy: TransportPolicy) -> Decision:
    """What to do with a complete request head (ending in an empty line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    try:
        target = urlsplit(parts[1]) if len(parts) == 3 else None
        query = parse_qs(target.query) if target else {}
    except ValueError:
        # urlsplit("//[x") raises: a malformed request line is the client's error.
        return Reject(HTTP_400)
    ours = (
        target is not None
        and parts[0] == "GET"
        and target.path.rstrip("/") == "/socket.io"
        and query.get("transport") == ["websocket"]
        and "sid" not in query
        and headers.get("upgrade", "").lower() == "websocket"
    )
    if not ours:
        return HandOver()
    if query.get("EIO") != ["4"] or "sec-websocket-key" not in headers:
        return Reject(HTTP_400)
    if headers.get("sec-websocket-version") != WS_VERSION:
        return Reject(HTTP_426)
    if not policy.origin_allowed(headers.get("origin")):
        return Reject(HTTP_403)
    return Upgrade(headers)
