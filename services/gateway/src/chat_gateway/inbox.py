"""A connected socket's events: one at a time, in arrival order, with back-pressure.

Before issue 6 each event of a socket ran as its own task, so two `message:send` sent
back to back could be stored out of order, and a client could start any number of
tasks. Here a busy socket has one `Inbox` (made on its first event and dropped once
drained: an idle socket holds none) and one task running its events in order. Past
`max_in_flight` queued events the socket is paused (`Owner.pause`: no more bytes read
or parsed) until half of them ran (`Owner.resume`: parsing goes on where it stopped).

Used by the lean WebSocket path (`lean.LeanConnection`); python-socketio's long-polling
path gets the same order from `async_handlers=False` (app.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

import msgspec

from chat_contracts import ErrorCode
from chat_gateway import acks, wire

log = logging.getLogger(__name__)


class Owner(Protocol):
    """The connection an inbox belongs to (`lean.LeanConnection`)."""

    sid: str

    def pause(self) -> None:
        """Stop reading and parsing the socket's input (the inbox is full)."""

    def resume(self) -> None:
        """Go on parsing and reading where `pause` stopped (the inbox has room)."""

    def strike(self) -> None:
        """Count one refused event."""

    def ack(self, ack_id: int, ack: dict[str, Any]) -> None:
        """Send the ack of the event with this id."""


class EventHandler(Protocol):
    """What runs one event (`app.Gateway`)."""

    async def event(self, sid: str, event: str, data: Any) -> dict[str, Any] | None:
        """Handle one client event; the ack to send, or None for none."""


class Inbox:
    """The queued events of one busy socket."""

    __slots__ = ("_events", "_handler", "_max_in_flight", "_owner", "_paused")

    def __init__(
        self, owner: Owner, handler: EventHandler, max_in_flight: int, first: wire.SioPacket
    ) -> None:
        self._owner = owner
        self._handler = handler
        self._max_in_flight = max_in_flight
        self._events = deque((first,))
        self._paused = False

    def put(self, packet: wire.SioPacket) -> None:
        """Queue an event behind the others; pause the socket's reading when full."""
        events = self._events
        events.append(packet)
        if len(events) >= self._max_in_flight and not self._paused:
            # Back-pressure: stop reading this socket until its queue halves.
            self._paused = True
            self._owner.pause()

    def __len__(self) -> int:
        """Events waiting, the one running included."""
        return len(self._events)

    def clear(self) -> None:
        """The connection is gone: drop what has not started."""
        self._events.clear()

    async def drain(self) -> None:
        """Run the events in order until none is left (the socket's one task)."""
        events = self._events
        low_water = self._max_in_flight // 2
        while events:
            ack = await self._run(events[0])
            if not events:
                break  # the connection was lost meanwhile (its queue cleared)
            events.popleft()
            if ack is not None and ack.get("code") == ErrorCode.RATE_LIMITED:
                # A client past its rate limit must wait `retryAfter`; one that does
                # not is not read until then (its queue fills, reading pauses, TCP
                # pushes back): a flood costs nothing while it waits. Answering every
                # flooded event instead (~27,000/s from one socket) doubled a
                # bystander's p99 (tests/integration/test_flood.py).
                await asyncio.sleep(min(ack["retryAfter"], MAX_RATE_PAUSE_MS) / 1000)
            if self._paused and len(events) <= low_water:
                # Before `resume`: the events it parses may fill the queue again.
                self._paused = False
                self._owner.resume()

    async def _run(self, packet: wire.SioPacket) -> dict[str, Any] | None:
        # The payload stays raw JSON here: the gateway decodes it straight into the
        # event's contract Struct (one pass, no intermediate dicts).
        owner = self._owner
        ack: dict[str, Any] | None
        try:
            try:
                args: list[Any] | None = _event_args.decode(packet.data)
            except (msgspec.DecodeError, RecursionError):
                args = None
            name = msgspec.json.decode(args[0]) if args else None
            if not isinstance(name, str):
                owner.strike()
                ack = acks.error(ErrorCode.VALIDATION_ERROR, "malformed event packet")
            else:
                ack = await self._handler.event(
                    owner.sid, name, args[1] if args is not None and len(args) > 1 else None
                )
        except Exception:
            log.exception("event of %s failed", owner.sid)
            ack = acks.error(ErrorCode.INTERNAL, "internal error")
        if packet.ack_id is not None and ack is not None:
            owner.ack(packet.ack_id, ack)
        return ack


_event_args = msgspec.json.Decoder(list[msgspec.Raw])
#: The longest a rate-limited socket goes unread (ms), whatever its `retryAfter`.
MAX_RATE_PAUSE_MS = 1_000
