"""Deliveries from NATS to local sockets, and the subscriptions that bring them.

A worker publishes a `Fanout` whose `data` is the client JSON, encoded once. Here the
Socket.IO packet and its WebSocket frame are built once per delivery and the same bytes
go to every target socket (`OutFrame`): no per-socket encoding, no task per recipient.

Every subscription of this gateway feeds one inbox drained by one task, in arrival
order. nats-py would otherwise run a task and a queue per subscription (one per local
user and per room: thousands), and callbacks of different subscriptions could run out
of order — a user's `leave` overtaking a room event published before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from chat_contracts import subjects
from chat_contracts.bus import Fanout
from chat_gateway.conn import Connection, OutFrame
from chat_gateway.ordering import HOLD_S, RoomOrder
from chat_gateway.reached import Reached
from chat_gateway.registry import Interest, Registry
from chat_runtime.bus import Bus
from chat_runtime.worker import cancel_tasks

log = logging.getLogger(__name__)

_decoder = msgspec.msgpack.Decoder(Fanout)
#: An event held for its room's seq order, with where it goes: None for the room's
#: sockets, else the user subject (`rt.user.<id>`, `rt.users`) it came on as a copy.
_Held = tuple[str | None, Fanout]

#: Presence and status are published once per room of the user, the same bytes on each
#: room; remember this many dedupe ids at most (with the sockets already reached; see
#: reached.py for the age limit) so that a socket in several of those rooms gets the
#: event once.
DEDUPE_MEMORY = 4_096
#: Room events copied to new members (`Fanout.once_id`, see chat_runtime.joins) may come
#: twice; the sockets each of the last this many was given to. Both copies are published
#: back to back, so an entry is needed for milliseconds; the bound is for memory.
ONCE_MEMORY = 1_024


class _Sink:
    """Stands in for a nats-py subscription's pending queue (nats-py 2.16 internals:
    `Client._process_msg` calls `sub._pending_queue.put_nowait(msg)` after adding the
    payload size to `sub._pending_size`, and `Subscription._drain` awaits `join()`).
    The gateway's pyproject pins nats-py to that minor version; tests/test_fanout.py
    fails when those internals change.

    Messages go straight to the gateway's single inbox instead.
    """

    __slots__ = ("_delivery", "_sub")

    def __init__(self, sub: Subscription, delivery: Delivery) -> None:
        self._sub: Subscription | None = sub
        self._delivery = delivery

    def put_nowait(self, msg: Msg) -> None:
        # nats-py stops calling once the subscription is unsubscribed (and released).
        if self._sub is not None:
            self._sub._pending_size -= len(msg.data)
        self._delivery.enqueue(msg)

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    async def join(self) -> None:
        return None


def _release(sub: Subscription) -> None:
    """Break an unsubscribed subscription's reference cycles: it is freed at once.

    nats-py's subscription and its message iterator (made for a subscription without a
    callback, which ours are) refer to each other, and so do the subscription and its
    sink. Left alone, every unsubscribe (a user's last socket leaving, a room emptied
    here) left 11 objects, ~4 KiB with the iterator's queue, for the cycle collector,
    whose oldest generation almost never runs under `chat_runtime.worker.run`'s
    thresholds: it was the gateways' RSS growth in the 10-minute soak (~2.5 MiB/min at
    ~10 reconnects/s per gateway; `/debug/gc?garbage=1` named the types).
    """
    sub._message_iterator = None
    sink = sub._pending_queue
    if isinstance(sink, _Sink):
        sink._sub = None


class Delivery:
    """Owns the gateway's NATS interest and delivers fan-outs to local sockets."""

    def __init__(self, bus: Bus, registry: Registry) -> None:
        self._bus = bus
        self._registry = registry
        self._subs: dict[str, Subscription] = {}
        self._seen = Reached(DEDUPE_MEMORY)
        self._served = Reached(ONCE_MEMORY)
        #: NATS messages, and rooms whose hold for a missing seq ran out (ordering.py).
        self._inbox: deque[Msg | _HoldExpired] = deque()
        self._order: RoomOrder[_Held] = RoomOrder()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.delivered = 0

    async def start(self) -> None:
        """Start draining the inbox; hear `rt.users` (deliveries to lists of users)."""
        self._worker = asyncio.get_running_loop().create_task(self._drain())
        await self.apply(Interest(subscribe=[subjects.USERS_FANOUT]))

    def enqueue(self, msg: Msg) -> None:
        """Called by every subscription for every message, in arrival order."""
        self._inbox.append(msg)
        self._wakeup.set()

    async def _drain(self) -> None:
        inbox = self._inbox
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while inbox:
                msg = inbox.popleft()
                try:
                    if isinstance(msg, _HoldExpired):
                        log.info("room %s: a missing seq did not come in %.1f s", msg.room, HOLD_S)
                        await self._release(msg.room, self._order.expire(msg.room))
                    else:
                        await self._on_message(msg)
                except Exception:
                    log.exception("fan-out on %s failed", msg.subject)

    async def apply(self, interest: Interest) -> None:
        """Subscribe and unsubscribe as a registry change asks."""
        for subject in interest.unsubscribe:
            sub = self._subs.pop(subject, None)
            if sub is not None:
                try:
                    await sub.unsubscribe()
                finally:
                    _release(sub)
            if subject.startswith(subjects.ROOM_PREFIX):
                # Left: no local socket is in the room, what it held goes to nobody.
                room = subject[len(subjects.ROOM_PREFIX) :]
                self._order.forget(room)
                timer = self._timers.pop(room, None)
                if timer is not None:
                    timer.cancel()
        for subject in interest.subscribe:
            if subject not in self._subs:
                # No callback: nats-py starts no task; the sink takes the messages.
                sub = await self._bus.nc.subscribe(subject)
                sub._pending_queue = _Sink(sub, self)  # type: ignore[assignment]
                self._subs[subject] = sub

    @property
    def subjects(self) -> list[str]:
        """Subjects subscribed now (for tests and metrics)."""
        return sorted(self._subs)

    async def _on_message(self, msg: Msg) -> None:
        try:
            fanout = _decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("undecodable fan-out on %s", msg.subject)
            return
        if msg.subject.startswith(subjects.USER_PREFIX):
            await self._on_user(msg.subject[len(subjects.USER_PREFIX) :], fanout)
        elif msg.subject == subjects.USERS_FANOUT:
            await self._on_users(fanout)
        else:
            await self._on_room(msg.subject[len(subjects.ROOM_PREFIX) :], fanout)

    async def _on_user(self, user_id: str, fanout: Fanout) -> None:
        # Control first: the user's sockets are in (or out of) the room before the
        # events of the same delivery, and before any later room event.
        if fanout.leave:
            await self.apply(self._registry.leave_user(user_id, fanout.leave))
        if fanout.join:
            await self.apply(self._registry.join_user(user_id, fanout.join))
        if user_id in self._registry.by_user:
            await self._copy_in_order(subjects.USER_PREFIX + user_id, fanout)

    async def _on_users(self, fanout: Fanout) -> None:
        """One delivery for a list of users: joins first, then each frame built once and
        sent to every local socket of those users (most gateways hold none of them)."""
        by_user = self._registry.by_user
        local = [user_id for user_id in fanout.users if user_id in by_user]
        if not local:
            return
        if fanout.join:
            for user_id in local:
                await self.apply(self._registry.join_user(user_id, fanout.join))
        await self._copy_in_order(subjects.USERS_FANOUT, fanout)

    async def _copy_in_order(self, subject: str, fanout: Fanout) -> None:
        """A delivery to users; a copy of a room's `message:new` (or one behind a gap of
        that room) keeps its place in the room's seq order, or it would overtake."""
        room = fanout.room_copy
        if room is not None and (fanout.seq is not None or self._order.holding(room)):
            await self._in_order(room, subject, fanout)
        else:
            await self._to_users(subject, fanout)

    async def _to_users(self, subject: str, fanout: Fanout) -> None:
        """The events of a delivery on `rt.user.<id>` or `rt.users` (`subject`), to the
        local sockets of its users."""
        by_user = self._registry.by_user
        if subject == subjects.USERS_FANOUT:
            targets: dict[str, Connection] = {}
            for user_id in fanout.users:
                targets.update(by_user.get(user_id, {}))
        else:
            targets = by_user.get(subject[len(subjects.USER_PREFIX) :], {})
        if not targets:
            return
        served = self._served_for(fanout.once_id)
        if fanout.event:
            frame = OutFrame.event(fanout.event, fanout.data)
            self._emit(fanout, frame, targets.items(), served)
        for extra in fanout.more:
            self._emit(fanout, OutFrame.event(extra.event, extra.data), targets.items())
        await self._copy_closes_room(fanout)

    async def _on_room(self, room: str, fanout: Fanout) -> None:
        if fanout.seq is None and not self._order.holding(room):
            await self._on_room_event(room, fanout)  # the common case: no gap open
        else:
            await self._in_order(room, None, fanout)

    async def _in_order(self, room: str, subject: str | None, fanout: Fanout) -> None:
        """Through the room's seq order (ordering.py); `subject` None: a room event,
        else the user delivery it is a copy on."""
        order = self._order
        late = order.late
        await self._release(room, order.arrive(room, fanout.seq, (subject, fanout)))
        if order.late > late:
            log.info("room %s: seq %s came after a later one", room, fanout.seq)

    async def _release(self, room: str, ready: list[_Held]) -> None:
        for subject, fanout in ready:
            if subject is None:
                await self._on_room_event(room, fanout)
            else:
                await self._to_users(subject, fanout)
        if self._order.holding(room) and room not in self._timers:
            self._arm(room)

    def _arm(self, room: str) -> None:
        """The room's events wait for a missing seq: at most `HOLD_S`, then the expiry
        is handled in turn with the NATS messages (same task, same order)."""

        def expired() -> None:
            del self._timers[room]
            self._inbox.append(_HoldExpired(room))
            self._wakeup.set()

        self._timers[room] = asyncio.get_running_loop().call_later(HOLD_S, expired)

    async def _on_room_event(self, room: str, fanout: Fanout) -> None:
        if fanout.event:
            if fanout.dedupe_id is not None:
                self._emit_once(room, fanout)
            else:
                targets = self._registry.by_room.get(room)
                if targets:
                    frame = OutFrame.event(fanout.event, fanout.data)
                    served = self._served_for(fanout.once_id)
                    self._emit(fanout, frame, targets.items(), served)
        if fanout.close_room:
            await self.apply(self._registry.close_room(room))

    def _served_for(self, once_id: str | None) -> set[str] | None:
        """The sockets already given the event `once_id` (None: not a copied event)."""
        if once_id is None:
            return None
        return self._served.of(once_id)

    async def _copy_closes_room(self, fanout: Fanout) -> None:
        """A copy of a room's last event (group deleted) closes the room here too, in
        case the room's own copy never reached this gateway."""
        if fanout.room_copy is not None and fanout.close_room:
            await self.apply(self._registry.close_room(fanout.room_copy))

    def _emit_once(self, room: str, fanout: Fanout) -> None:
        """One copy of an event published on several rooms: to this room's local sockets
        (and those of `rooms`, when the publisher listed them) that no earlier copy reached.
        """
        reached = self._seen.of(fanout.dedupe_id or "")
        union: dict[str, Connection] = {}
        for name in (room, *fanout.rooms):
            for sid, conn in self._registry.by_room.get(name, {}).items():
                if sid not in reached:
                    union[sid] = conn
        if not union:
            return
        reached.update(union)
        frame = OutFrame.event(fanout.event, fanout.data)
        self._emit(fanout, frame, union.items())
        for extra in fanout.more:
            self._emit(fanout, OutFrame.event(extra.event, extra.data), union.items())

    def _emit(
        self,
        fanout: Fanout,
        frame: OutFrame,
        targets: Iterable[tuple[str, Connection]],
        served: set[str] | None = None,
    ) -> None:
        """Send `frame` to `targets` but the skipped ones; with `served`, only to sockets
        not in it, and add those to it."""
        if fanout.to_sid is not None:
            targets = [(sid, conn) for sid, conn in targets if sid == fanout.to_sid]
        skip_user: Any = (
            self._registry.by_user.get(fanout.skip_user, ()) if fanout.skip_user else ()
        )
        skip_sid = fanout.skip_sid
        skip_users = (
            {sid for user in fanout.skip_users for sid in self._registry.by_user.get(user, ())}
            if fanout.skip_users
            else ()
        )
        count = 0
        if served is not None:
            targets = [(sid, conn) for sid, conn in targets if sid not in served]
            served.update(sid for sid, _ in targets)
        for sid, conn in targets:
            if sid == skip_sid or sid in skip_user or sid in skip_users:
                continue
            conn.send(frame)
            count += 1
        self.delivered += count

    async def close(self) -> None:
        """Drop every subscription and stop the inbox."""
        await self.apply(Interest(unsubscribe=list(self._subs)))
        for timer in self._timers.values():
            timer.cancel()
        if self._worker is not None:
            await cancel_tasks([self._worker])


class _HoldExpired:
    """A room's wait for a missing seq ran out; queued behind the NATS messages."""

    __slots__ = ("room", "subject")

    def __init__(self, room: str) -> None:
        self.room = room
        self.subject = subjects.ROOM_PREFIX + room
