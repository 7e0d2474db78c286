"""The Socket.IO frame is built around the publisher's JSON without re-encoding it, and
the fan-out inbox takes nats-py's messages in order (real nats-server)."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest_asyncio

from chat_contracts import subjects
from chat_contracts.bus import Actor, Fanout, Frame
from chat_gateway.conn import OutFrame
from chat_gateway.fanout import Delivery, _Sink
from chat_gateway.ordering import HOLD_S
from chat_gateway.registry import Registry
from chat_runtime.bus import Bus, encode
from chat_testkit.probes import tasks_running


def test_event_frame_is_a_socketio_v5_event_packet() -> None:
    data = b'{"id":"m_1","content":"h\\u00e9 \\"x\\""}'
    frame = OutFrame.event("message:new", data).text
    assert frame.startswith("2[")
    assert json.loads(frame[1:]) == ["message:new", {"id": "m_1", "content": 'hé "x"'}]


# --- Delivery against a real nats-server --------------------------------------------
#
# `fanout._Sink` replaces a nats-py subscription's private `_pending_queue` and keeps its
# private `_pending_size` at zero (nats-py 2.16: `Client._process_msg` adds the payload
# size to `sub._pending_size`, then `sub._pending_queue.put_nowait(msg)`; `Subscription.
# _drain` awaits `_pending_queue.join()`). services/gateway/pyproject.toml pins nats-py to
# the range checked here; these tests fail loudly when an upgrade changes those internals.

INTERNALS_CHANGED = (
    "nats-py's subscription internals changed (fanout._Sink relies on _pending_queue and "
    "_pending_size, fanout._release on _message_iterator); re-check fanout.py before "
    "moving the nats-py pin in services/gateway/pyproject.toml"
)


class Recording:
    """A socket that keeps what it was sent."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.texts: list[str] = []
        self._sent = asyncio.Event()

    def send(self, frame: OutFrame) -> None:
        self.texts.append(frame.text)
        self._sent.set()

    async def wait_count(self, count: int) -> list[str]:
        """What it got once it got `count` frames (5 s at most)."""

        async def until() -> None:
            while len(self.texts) < count:
                self._sent.clear()
                await self._sent.wait()

        try:
            await asyncio.wait_for(until(), timeout=5)
        except TimeoutError:
            raise AssertionError(f"{self.sid}: {len(self.texts)} of {count} frames") from None
        return self.texts

    def close(self) -> None:
        pass


@pytest_asyncio.fixture
async def delivery(nats_url: str) -> AsyncIterator[tuple[Bus, Registry, Delivery]]:
    bus = await Bus.connect(nats_url, name="gateway-test")
    registry = Registry()
    delivery = Delivery(bus, registry)
    await delivery.start()
    yield bus, registry, delivery
    await delivery.close()
    await bus.close()


async def test_close_ends_the_inbox_worker_before_it_returns(nats_url: str) -> None:
    bus = await Bus.connect(nats_url, name="gateway-test")
    delivery = Delivery(bus, Registry())
    await delivery.start()
    assert tasks_running("Delivery._drain")
    await delivery.close()
    assert tasks_running("Delivery._drain") == []
    await bus.close()


def _event(user_id: str) -> bytes:
    return encode(Fanout(event="e", data=msgspec.json.encode({"to": user_id})))


async def test_nats_subscription_still_has_the_private_queue_and_size_we_replace(
    nats_url: str,
) -> None:
    bus = await Bus.connect(nats_url, name="internals")
    try:
        sub = await bus.nc.subscribe("rt.user.internals")
        assert isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue), INTERNALS_CHANGED
        assert getattr(sub, "_pending_size", None) == 0, INTERNALS_CHANGED
        # Without a callback nats-py makes an iterator that refers back to the sub.
        iterator = getattr(sub, "_message_iterator", None)
        assert getattr(iterator, "_sub", None) is sub, INTERNALS_CHANGED
        await sub.unsubscribe()
    finally:
        await bus.close()


async def test_the_sink_receives_every_message_in_order_and_keeps_the_size_at_zero(
    delivery: tuple[Bus, Registry, Delivery],
) -> None:
    bus, registry, fan = delivery
    bob = Recording("s1")
    await fan.apply(registry.add_socket(bob, Actor(user_id="bob", name="Bob")))
    sub = fan._subs[subjects.user("bob")]
    assert isinstance(sub._pending_queue, _Sink), INTERNALS_CHANGED
    for i in range(20):
        await bus.publish(subjects.user("bob"), encode(Fanout(event="e", data=b'{"i":%d}' % i)))
    assert await bob.wait_count(20) == [f'2["e",{{"i":{i}}}]' for i in range(20)]
    # nats-py added each payload's size before handing it over; the sink took it back.
    # A drift would end in nats-py's slow-consumer drop once it reached 64 MB.
    assert sub._pending_size == 0, INTERNALS_CHANGED


async def test_an_unsubscribed_subscription_is_freed_without_the_cycle_collector(
    delivery: tuple[Bus, Registry, Delivery],
) -> None:
    _bus, registry, fan = delivery
    gc.disable()  # only reference counting may free it
    try:
        conn = Recording("s1")
        await fan.apply(registry.add_socket(conn, Actor(user_id="ivy", name="Ivy")))
        sub = weakref.ref(fan._subs[subjects.user("ivy")])
        assert sub() is not None
        _gone, interest = registry.remove_socket(conn.sid)
        await fan.apply(interest)
        assert subjects.user("ivy") not in fan.subjects
        # Before fanout._release, nats-py's sub <-> iterator and our sub <-> sink cycles
        # kept both (and the iterator's queue, ~4 KiB) until a full collection.
        assert sub() is None
    finally:
        gc.enable()


async def test_a_drain_with_the_sink_in_place_completes(nats_url: str) -> None:
    bus = await Bus.connect(nats_url, name="drain")
    registry = Registry()
    fan = Delivery(bus, registry)
    await fan.apply(registry.add_socket(Recording("s1"), Actor(user_id="eve", name="E")))
    await bus.publish(subjects.user("eve"), _event("eve"))
    # `Bus.close` drains every subscription: nats-py awaits `_pending_queue.join()`.
    await asyncio.wait_for(bus.close(), timeout=5)
    assert bus.nc.is_closed, INTERNALS_CHANGED


async def test_one_users_delivery_joins_and_reaches_only_the_listed_local_users(
    delivery: tuple[Bus, Registry, Delivery],
) -> None:
    bus, registry, fan = delivery
    bob, carol, dave = Recording("s-bob"), Recording("s-carol"), Recording("s-dave")
    for conn, user in ((bob, "bob"), (carol, "carol"), (dave, "dave")):
        await fan.apply(registry.add_socket(conn, Actor(user_id=user, name=user)))
    frames = [Frame("group:member:added", msgspec.json.encode({"userId": u})) for u in "xyz"]
    body = Fanout(
        event=frames[0].event,
        data=frames[0].data,
        more=frames[1:],
        join=["g_1"],
        users=["bob", "carol", "zed"],  # zed has no socket here
    )
    await bus.publish(subjects.USERS_FANOUT, encode(body))
    expected = [f'2["group:member:added",{{"userId":"{u}"}}]' for u in "xyz"]
    assert await bob.wait_count(3) == expected
    assert await carol.wait_count(3) == expected
    assert registry.in_room("bob", "g_1")
    assert registry.in_room("carol", "g_1")
    assert not registry.in_room("dave", "g_1")
    assert subjects.room("g_1") in fan.subjects
    # The joined sockets get the room's next event; dave got nothing at all.
    await bus.publish(subjects.room("g_1"), _event("room"))
    await bob.wait_count(4)
    await carol.wait_count(4)
    assert dave.texts == []


# --- one event published on several rooms (presence, status) ---------------------


@dataclass
class FakeConn:
    sid: str
    frames: list[str] = field(default_factory=list)

    def send(self, frame: OutFrame) -> None:
        self.frames.append(frame.text)

    def close(self) -> None:
        pass


@dataclass
class FakeMsg:
    subject: str
    data: bytes


def _sockets(registry: Registry, user: str, rooms: list[str], sid: str) -> FakeConn:
    conn = FakeConn(sid)
    registry.add_socket(conn, Actor(user_id=user, name=user))
    registry.join_user(user, rooms)
    return conn


async def test_an_event_on_several_rooms_reaches_each_socket_once_minus_hidden_users() -> None:
    registry = Registry()
    both = _sockets(registry, "cat", ["c_1", "g_1"], "s-cat")
    only_dm = _sockets(registry, "dee", ["c_1"], "s-dee")
    blocked = _sockets(registry, "eve", ["g_1"], "s-eve")
    subject_user = _sockets(registry, "ann", ["c_1", "g_1"], "s-ann")
    delivery = Delivery(None, registry)  # type: ignore[arg-type]  # no NATS needed
    body = msgspec.msgpack.encode(
        Fanout(
            event="presence:update",
            data=b'{"userId":"ann","status":"offline"}',
            more=[Frame("presence:last_seen", b'{"userId":"ann"}')],
            dedupe_id="d1",
            skip_user="ann",
            skip_users=["eve"],
        )
    )
    for room in ("c_1", "g_1"):  # the same bytes on each room
        msg: Any = FakeMsg(subjects.room(room), body)
        await delivery._on_message(msg)
    assert [json.loads(f[1:])[0] for f in both.frames] == ["presence:update", "presence:last_seen"]
    assert len(only_dm.frames) == 2
    assert blocked.frames == []
    assert subject_user.frames == []


# --- message:new in seq order (ordering.py) -------------------------------------------


def _room_event(seq: int | None, event: str = "message:new") -> Any:
    data = b'{"seq":%d}' % seq if seq is not None else b"{}"
    return FakeMsg(
        subjects.room("g_1"), msgspec.msgpack.encode(Fanout(event=event, data=data, seq=seq))
    )


async def test_a_message_new_published_early_waits_for_the_one_before_it() -> None:
    registry = Registry()
    member = Recording("s-cat")
    registry.add_socket(member, Actor(user_id="cat", name="cat"))
    registry.join_user("cat", ["g_1"])
    delivery = Delivery(None, registry)  # type: ignore[arg-type]  # no NATS needed
    delivery._worker = asyncio.get_running_loop().create_task(delivery._drain())
    try:
        # Seq 3 overtook seq 2 (two workers), and a reaction to 3 came right after it.
        for msg in (_room_event(1), _room_event(3), _room_event(None, "reaction"), _room_event(2)):
            delivery.enqueue(msg)
        got = [json.loads(f[1:]) for f in await member.wait_count(4)]
        assert got == [
            ["message:new", {"seq": 1}],
            ["message:new", {"seq": 2}],
            ["message:new", {"seq": 3}],
            ["reaction", {}],
        ]
        # A seq that never comes (its worker died after the commit) holds the room for
        # HOLD_S, then what waited goes out.
        loop = asyncio.get_running_loop()
        started = loop.time()
        delivery.enqueue(_room_event(5))
        delivery.enqueue(_room_event(6))
        texts = await member.wait_count(6)
        assert loop.time() - started >= HOLD_S * 0.9
        assert [json.loads(f[1:])[1]["seq"] for f in texts[4:]] == [5, 6]
    finally:
        await delivery.close()


async def test_a_copy_to_a_new_member_keeps_its_place_in_the_rooms_seq_order() -> None:
    """Room events published in a room's first seconds also go to its new members' own
    subjects (`room_copy`, chat_runtime.joins); such a copy of seq 3 must not overtake
    seq 2 either, and the room's own copy of 3 is then not sent again."""
    registry = Registry()
    member = Recording("s-cat")
    registry.add_socket(member, Actor(user_id="cat", name="cat"))
    registry.join_user("cat", ["g_1"])
    delivery = Delivery(None, registry)  # type: ignore[arg-type]  # no NATS needed

    def new(seq: int, subject: str, **more: Any) -> Any:
        fanout = Fanout(event="message:new", data=b'{"seq":%d}' % seq, seq=seq, **more)
        return FakeMsg(subject, msgspec.msgpack.encode(fanout))

    copy = {"once_id": "o3", "room_copy": "g_1"}
    for msg in (
        new(1, subjects.room("g_1")),
        new(3, subjects.user("cat"), **copy),
        new(3, subjects.room("g_1"), once_id="o3"),
        new(2, subjects.room("g_1")),
    ):
        await delivery._on_message(msg)
    assert [json.loads(t[1:])[1]["seq"] for t in member.texts] == [1, 2, 3]
