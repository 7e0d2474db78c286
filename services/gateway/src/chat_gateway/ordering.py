"""Live `message:new` events of a chat in `seq` order, whichever worker published them.

Two messages workers append to one chat concurrently: the one that got seq 6 may publish
before the one that got seq 5 (4-14 of ~600 deliveries arrived out of order at a member
in tests/integration/test_faults.py). Clients order by `seq` and treat a gap as missed
messages (PROTOCOL.md), so a gateway hands a room's events out in seq order: an event
whose seq is past the next expected one is held, with every later event of that room
(an edit or reaction of the held message must not overtake it), until the missing seq
arrives or `HOLD_S` passes. A seq that never comes (its worker died between commit and
publish, or this gateway missed it during a NATS reconnect) costs that room one
`HOLD_S` delay; the client's `sync` recovers the message.

Pure bookkeeping: the caller (`fanout.Delivery`) emits what `arrive`/`expire` return and
arms a timer when `holding` turns true. Seqs of a room are counted from the first one
this gateway sees (it subscribes to a room when a local member joins) until it leaves
the room (`forget`): the memory is one int per subscribed room.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

#: How long a room's events wait for a missing seq. Out-of-order publishes of two
#: workers are apart by a few ms (one event-loop turn of each); after a NATS restart a
#: worker's buffered publishes come when it reconnects (0.5 s between tries), so 0.5 s
#: still let 4 of ~700 through out of order there. A seq that never comes costs a room
#: this much once, only after a fault.
HOLD_S = 1.0


class RoomOrder(Generic[T]):
    """Per room: the last seq handed out and the events held behind a gap."""

    __slots__ = ("_held", "_last", "late")

    def __init__(self) -> None:
        #: Events that came after a later seq had gone out (after an expired hold); the
        #: same seq twice (a room event and its copy to a new member) is not late.
        self.late = 0
        self._last: dict[str, int] = {}
        self._held: dict[str, list[tuple[int | None, T]]] = {}

    def holding(self, room: str) -> bool:
        """Whether `room` has events waiting for a missing seq."""
        return room in self._held

    def arrive(self, room: str, seq: int | None, item: T) -> list[T]:
        """An event of `room` (`seq` for `message:new`, else None): what to emit now,
        in order (possibly nothing, or earlier held events with it)."""
        held = self._held.get(room)
        if held is not None:
            held.append((seq, item))
            return self._release(room, held)
        if seq is None:
            return [item]
        last = self._last.get(room)
        if last is not None and seq > last + 1:
            self._held[room] = [(seq, item)]
            return []
        if last is None or seq > last:
            self._last[room] = seq
        elif seq < last:
            self.late += 1
        return [item]

    def expire(self, room: str) -> list[T]:
        """The hold of `room` ran out: skip to the lowest seq held and release what
        follows in order (a second gap behind it starts a new hold)."""
        held = self._held.get(room)
        if held is None:
            return []
        self._last[room] = min(seq for seq, _ in held if seq is not None) - 1
        return self._release(room, held)

    def forget(self, room: str) -> list[T]:
        """This gateway left `room`: drop its count; what was held, in arrival order."""
        self._last.pop(room, None)
        return [item for _, item in self._held.pop(room, [])]

    def _release(self, room: str, held: list[tuple[int | None, T]]) -> list[T]:
        last = self._last[room]
        out: list[T] = []
        while held:
            seq = held[0][0]
            if seq is None or seq <= last + 1:
                index = 0
            else:
                # The missing seq may have arrived behind later events: it goes first.
                index = next((i for i, (s, _) in enumerate(held) if s == last + 1), -1)
                if index < 0:
                    break
            seq, item = held.pop(index)
            if seq is not None and seq > last:
                last = seq
            elif seq is not None and seq < last:
                self.late += 1
            out.append(item)
        self._last[room] = last
        if not held:
            del self._held[room]
        return out
