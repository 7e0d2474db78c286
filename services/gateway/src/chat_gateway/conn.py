"""Client connections as the gateway sees them, whatever transport carries them.

Two transports deliver Socket.IO to us: the lean WebSocket server (`lean.py`, the fast
path socket.io-client takes with `transports: ['websocket']`) and python-socketio
(HTTP long-polling and polling→WebSocket upgrades). Both are a `Connection`: something
that takes a prepared `OutFrame` without awaiting, and can be closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from engineio import packet as eio_packet

from chat_gateway import wire
from chat_gateway.metrics import SLOW_CLIENT_CUTOFFS
from chat_gateway.policy import TokenBucket, TransportPolicy

log = logging.getLogger(__name__)

#: Session closes under way (a reference keeps each task alive until it is done).
_closing: set[asyncio.Task[Any]] = set()


def _close_done(task: asyncio.Task[Any]) -> None:
    _closing.discard(task)
    if not task.cancelled() and isinstance(task.exception(), TimeoutError):
        log.info("closed a session whose client stopped polling")


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
    #: Source address of the TCP connection (per-address limits).
    peer: str

    def send(self, frame: OutFrame) -> None:
        """Queue or write the frame now; never waits (slow clients are cut off instead)."""

    def close(self) -> None:
        """Close the transport (the client reconnects and `sync`s)."""

    def strike(self) -> None:
        """Count one refused event; close the socket once it has sent too many."""


class SioConnection:
    """A python-socketio session (long-polling, or upgraded from it)."""

    __slots__ = ("_eio", "_queued", "_refused", "eio_sid", "peer", "policy", "sid")

    def __init__(
        self, sid: str, eio_sid: str, eio_server: Any, policy: TransportPolicy, peer: str = ""
    ) -> None:
        self.sid = sid
        self.eio_sid = eio_sid
        self.peer = peer
        self.policy = policy
        self._eio = eio_server
        #: Bytes queued since the Engine.IO queue was last seen empty: a poll (or the
        #: upgraded socket's writer) takes the whole queue, so this is what is unsent.
        self._queued = 0
        self._refused: TokenBucket | None = None

    def send(self, frame: OutFrame) -> None:
        """Put the packet on the Engine.IO socket's queue; cut off a client that does
        not fetch it (the WebSocket path's rule: `policy.max_write_buffer` bytes)."""
        socket = self._eio.sockets.get(self.eio_sid)
        if socket is None or socket.closed:
            return
        queue = socket.queue
        if queue.empty():
            self._queued = 0
        self._queued += len(frame.text)
        if self._queued > self.policy.max_write_buffer:
            log.warning("closing slow client %s (%d bytes unsent)", self.sid, self._queued)
            SLOW_CLIENT_CUTOFFS.inc()
            self._queued = 0
            self.close()
            return
        queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data=frame.text))

    def close(self) -> None:
        """Close the Engine.IO session (after what is queued has been sent).

        A `None` on the queue only ends an upgraded socket's writer; a long-polling
        session would live on, so the server closes the session itself.
        """
        if self.eio_sid not in self._eio.sockets:
            return
        # python-engineio waits until the client has fetched the queue (the last
        # packets, e.g. a connect_error, still reach it); a client that never polls
        # again is given one heartbeat period, then the wait is dropped.
        grace = (self.policy.ping_interval_ms + self.policy.ping_timeout_ms) / 1000
        task = asyncio.ensure_future(asyncio.wait_for(self._eio.disconnect(self.eio_sid), grace))
        _closing.add(task)
        task.add_done_callback(_close_done)

    def strike(self) -> None:
        """Count one refused event; close the session once it has sent too many."""
        bucket = self._refused
        if bucket is None:
            per_min = self.policy.refused_per_min
            bucket = self._refused = TokenBucket(per_min / 60, per_min)
        if not bucket.take():
            log.info("closing %s: too many refused events", self.sid)
            self.close()
