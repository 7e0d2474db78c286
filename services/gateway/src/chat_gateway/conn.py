"""Client connections as the gateway sees them, whatever transport carries them.

Two transports deliver Socket.IO to us: the lean WebSocket server (`lean.py`, the fast
path socket.io-client takes with `transports: ['websocket']`) and python-socketio
(HTTP long-polling and polling→WebSocket upgrades). Both are a `Connection`: something
that takes a prepared `OutFrame` without awaiting, and can be closed.
"""

from __future__ import annotations

from typing import Any, Protocol

from engineio import packet as eio_packet

from chat_gateway import wire


class OutFrame:
    """A server→client Socket.IO packet, encoded once and shared by every recipient.

    `text` is the Socket.IO packet (e.g. `2["message:new",{...}]`); the WebSocket frame
    bytes (plain, or deflated when large) are built on first use and then reused.
    """

    __slots__ = ("_deflated", "_plain", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._plain: bytes | None = None
        self._deflated: bytes | None = None

    @classmethod
    def event(cls, event: str, data: bytes) -> OutFrame:
        """An EVENT packet in the default namespace around ready JSON `data`."""
        return cls('2["' + event + '",' + data.decode() + "]")

    def ws(self, deflate_threshold: int | None) -> bytes:
        """The WebSocket frame: deflated once when above the threshold and allowed."""
        if deflate_threshold is not None and len(self.text) > deflate_threshold:
            if self._deflated is None:
                payload = (wire.EIO_MESSAGE + self.text).encode()
                self._deflated = wire.frame(wire.deflate(payload), rsv1=True)
            return self._deflated
        if self._plain is None:
            self._plain = wire.frame((wire.EIO_MESSAGE + self.text).encode())
        return self._plain


class Connection(Protocol):
    """One client socket, as the registry and the fan-out see it."""

    sid: str

    def send(self, frame: OutFrame) -> None:
        """Queue or write the frame now; never waits (slow clients are cut off instead)."""

    def close(self) -> None:
        """Close the transport (the client reconnects and `sync`s)."""


class SioConnection:
    """A python-socketio session (long-polling, or upgraded from it)."""

    __slots__ = ("_eio", "eio_sid", "sid")

    def __init__(self, sid: str, eio_sid: str, eio_server: Any) -> None:
        self.sid = sid
        self.eio_sid = eio_sid
        self._eio = eio_server

    def send(self, frame: OutFrame) -> None:
        """Put the packet on the Engine.IO socket's queue (unbounded; its writer drains it)."""
        socket = self._eio.sockets.get(self.eio_sid)
        if socket is not None and not socket.closed:
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=frame.text))

    def close(self) -> None:
        """Ask Engine.IO to close the session."""
        socket = self._eio.sockets.get(self.eio_sid)
        if socket is not None:
            socket.queue.put_nowait(None)
