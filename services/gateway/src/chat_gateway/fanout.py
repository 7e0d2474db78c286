"""Deliveries from NATS to local sockets, and the subscriptions that bring them.

A worker publishes a `Fanout` whose `data` is the client JSON, encoded once. Here the
Socket.IO EVENT frame is built once per delivery (`2["event",<data>]`) and handed to
each target socket's Engine.IO queue as is: no per-socket JSON encoding, no task per
recipient (python-socketio's own `emit` makes one task per socket; ANCHORS.md).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from chat_contracts import subjects
from chat_contracts.bus import Fanout
from chat_gateway.registry import Interest, Registry
from chat_runtime.bus import Bus

log = logging.getLogger(__name__)

#: Sends one pre-encoded Engine.IO message to one socket (engineio's `send`).
SendFrame = Callable[[str, str], Awaitable[None]]

_decoder = msgspec.msgpack.Decoder(Fanout)

#: Presence is published once per room of the user; remember this many dedupe ids so
#: that a gateway holding sockets in several of those rooms emits it once per socket.
DEDUPE_MEMORY = 4_096


def event_frame(event: str, data: bytes) -> str:
    """The Socket.IO v5 EVENT packet in the default namespace, built around ready JSON."""
    return '2["' + event + '",' + data.decode() + "]"


class Delivery:
    """Owns the gateway's NATS interest and delivers fan-outs to local sockets."""

    def __init__(self, bus: Bus, registry: Registry, send: SendFrame) -> None:
        self._bus = bus
        self._registry = registry
        self._send = send
        self._subs: dict[str, Subscription] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.delivered = 0

    async def apply(self, interest: Interest) -> None:
        """Subscribe and unsubscribe as a registry change asks."""
        for subject in interest.unsubscribe:
            sub = self._subs.pop(subject, None)
            if sub is not None:
                await sub.unsubscribe()
        for subject in interest.subscribe:
            if subject not in self._subs:
                self._subs[subject] = await self._bus.subscribe(subject, self._on_message)

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
        else:
            await self._on_room(msg.subject[len(subjects.ROOM_PREFIX) :], fanout)

    async def _on_user(self, user_id: str, fanout: Fanout) -> None:
        # Control first: a join must be in place before the room's next event arrives.
        if fanout.leave:
            await self.apply(self._registry.leave_user(user_id, fanout.leave))
        if fanout.join:
            await self.apply(self._registry.join_user(user_id, fanout.join))
        if fanout.event:
            await self._emit(fanout, self._registry.user_targets(user_id))
        for frame in fanout.more:
            await self._emit(
                Fanout(event=frame.event, data=frame.data), self._registry.user_targets(user_id)
            )

    async def _on_room(self, room: str, fanout: Fanout) -> None:
        if fanout.event:
            if fanout.dedupe_id is not None:
                await self._emit_once(fanout)
            else:
                targets = self._registry.room_targets.get(room)
                if targets:
                    await self._emit(fanout, list(targets.items()))
        if fanout.close_room:
            await self.apply(self._registry.close_room(room))

    async def _emit_once(self, fanout: Fanout) -> None:
        """An event published on several rooms: the first copy goes to all of them here."""
        key = fanout.dedupe_id or ""
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > DEDUPE_MEMORY:
            self._seen.popitem(last=False)
        union: dict[str, str] = {}
        for room in fanout.rooms:
            union.update(self._registry.room_targets.get(room, {}))
        await self._emit(fanout, list(union.items()))

    async def _emit(self, fanout: Fanout, targets: Iterable[tuple[str, str]]) -> None:
        frame: str | None = None
        skip_user_sids = (
            self._registry.by_user.get(fanout.skip_user, set()) if fanout.skip_user else set()
        )
        for sid, eio_sid in targets:
            if sid == fanout.skip_sid or sid in skip_user_sids:
                continue
            if fanout.to_sid is not None and sid != fanout.to_sid:
                continue
            if frame is None:
                frame = event_frame(fanout.event, fanout.data)
            await self._send(eio_sid, frame)
            self.delivered += 1

    async def close(self) -> None:
        """Drop every subscription."""
        await self.apply(Interest(unsubscribe=list(self._subs)))
