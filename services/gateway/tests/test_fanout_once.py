"""Room events copied to new members reach every socket exactly once (real nats-server).

A copy (`Fanout.room_copy`) and the room's own delivery share a `once_id`; whichever
comes first serves a socket, the other skips it (see chat_runtime.joins).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from chat_contracts import subjects
from chat_contracts.bus import Actor, Fanout
from chat_gateway.conn import OutFrame
from chat_gateway.fanout import Delivery
from chat_gateway.registry import Registry
from chat_runtime.bus import Bus, encode

END = "end"


class Recording:
    """A socket that keeps the events it was sent."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.texts: list[str] = []

    def send(self, frame: OutFrame) -> None:
        self.texts.append(frame.text)

    def events(self) -> list[str]:
        return [t for t in self.texts if END not in t]

    def close(self) -> None:
        pass


@pytest_asyncio.fixture
async def gateway(nats_url: str) -> AsyncIterator[tuple[Bus, Registry, Delivery]]:
    bus = await Bus.connect(nats_url, name="gateway-once")
    registry = Registry()
    delivery = Delivery(bus, registry)
    await delivery.start()
    yield bus, registry, delivery
    await delivery.close()
    await bus.close()


async def _settle(bus: Bus, *sockets: Recording) -> None:
    """Until every socket got one more `END` marker on its user subject (so everything
    published before it arrived)."""
    want = {sock.sid: sum(END in t for t in sock.texts) + 1 for sock in sockets}
    for user in {sock.sid.split("-")[1] for sock in sockets}:
        await bus.publish(subjects.user(user), encode(Fanout(event=END, data=b"{}")))
    for _ in range(500):
        if all(sum(END in t for t in s.texts) >= want[s.sid] for s in sockets):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("END never arrived")


def _room_event(once_id: str | None) -> Fanout:
    return Fanout(event="message:new", data=b'{"id":"m_1"}', once_id=once_id)


async def _add(registry: Registry, delivery: Delivery, sid: str) -> Recording:
    sock = Recording(sid)
    user = sid.split("-")[1]
    await delivery.apply(registry.add_socket(sock, Actor(user_id=user, name=user)))
    return sock


async def test_the_room_delivery_first_then_the_copy_serves_each_socket_once(
    gateway: tuple[Bus, Registry, Delivery],
) -> None:
    bus, registry, fan = gateway
    alice, bob, bob2 = [await _add(registry, fan, s) for s in ("s-alice", "s-bob", "s2-bob")]
    await fan.apply(registry.join_user("alice", ["g_1"]))
    await fan.apply(registry.join_user("bob", ["g_1"]))
    await bus.flush()
    room = _room_event("x1")
    await bus.publish(subjects.room("g_1"), encode(room))
    room.room_copy = "g_1"
    await bus.publish(subjects.user("bob"), encode(room))
    await _settle(bus, alice, bob, bob2)
    for sock in (alice, bob, bob2):
        assert sock.events() == ['2["message:new",{"id":"m_1"}]'], sock.sid


async def test_a_copy_before_the_join_reaches_the_new_member_and_the_room_the_others(
    gateway: tuple[Bus, Registry, Delivery],
) -> None:
    bus, registry, fan = gateway
    alice, bob = [await _add(registry, fan, s) for s in ("s-alice", "s-bob")]
    await fan.apply(registry.join_user("alice", ["g_1"]))
    await bus.flush()
    # Bob's gateway has not joined him yet (his join is late): the copy still reaches him.
    copy = _room_event("x2")
    copy.room_copy = "g_1"
    await bus.publish(subjects.user("bob"), encode(copy))
    await _settle(bus, bob)
    await fan.apply(registry.join_user("bob", ["g_1"]))
    await bus.flush()
    # Then the room's own delivery: Alice gets it, Bob not a second time.
    await bus.publish(subjects.room("g_1"), encode(_room_event("x2")))
    await _settle(bus, alice, bob)
    assert alice.events() == bob.events() == ['2["message:new",{"id":"m_1"}]']
    # A room event without a once_id is not deduplicated.
    await bus.publish(subjects.room("g_1"), encode(_room_event(None)))
    await _settle(bus, alice, bob)
    assert len(alice.events()) == len(bob.events()) == 2


async def test_a_copy_to_several_new_members_travels_once_on_rt_users(
    gateway: tuple[Bus, Registry, Delivery],
) -> None:
    bus, registry, fan = gateway
    bob, carol, dave = [await _add(registry, fan, s) for s in ("s-bob", "s-carol", "s-dave")]
    copy = _room_event("x3")
    copy.room_copy = "g_1"
    copy.users = ["bob", "carol"]
    await bus.publish(subjects.USERS_FANOUT, encode(copy))
    await bus.publish(subjects.USERS_FANOUT, encode(copy))  # a repeat is dropped
    await _settle(bus, bob, carol, dave)
    assert bob.events() == carol.events() == ['2["message:new",{"id":"m_1"}]']
    assert dave.events() == []


async def test_a_copy_of_a_group_deletion_closes_the_room_here(
    gateway: tuple[Bus, Registry, Delivery],
) -> None:
    bus, registry, fan = gateway
    bob = await _add(registry, fan, "s-bob")
    await fan.apply(registry.join_user("bob", ["g_1"]))
    copy = Fanout(event="group:deleted", data=b"{}", once_id="x4", room_copy="g_1")
    copy.close_room = True
    await bus.publish(subjects.user("bob"), encode(copy))
    await _settle(bus, bob)
    assert bob.events() == ['2["group:deleted",{}]']
    assert not registry.in_room("bob", "g_1")
    assert subjects.room("g_1") not in fan.subjects
