"""Recent joins, and the copies of room events they cause (`Publisher.to_room`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts import server, subjects
from chat_contracts.bus import Fanout
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import ManualTicks
from chat_runtime.joins import RecentJoins

_fanout = msgspec.msgpack.Decoder(Fanout)
END = "rt.test.end"


def test_a_join_is_recent_for_the_window_only() -> None:
    clock = ManualTicks()
    joins = RecentJoins(window_s=5.0, clock=clock)
    joins.joined(["bob"], ["g_1", "g_2"])
    clock.now += 2
    joins.joined(["carol"], ["g_1"])
    assert joins.of("g_1") == ["bob", "carol"]
    assert joins.of("g_2") == ["bob"]
    clock.now += 3.5  # bob's join is 5.5 s old, carol's 3.5 s
    assert joins.of("g_1") == ["carol"]
    assert joins.of("g_2") == []
    assert len(joins) == 2  # g_2 pruned; bob's old entry in g_1 stays until g_1 goes
    clock.now += 2
    assert joins.of("g_1") == []
    assert len(joins) == 0
    assert joins.of("g_9") == []


def test_a_leave_ends_the_copies_at_once() -> None:
    joins = RecentJoins(window_s=5.0, clock=ManualTicks())
    joins.joined(["bob", "carol"], ["g_1"])
    joins.left(["bob"], ["g_1"])
    assert joins.of("g_1") == ["carol"]
    joins.left(["carol"], ["g_1", "g_unknown"])
    assert joins.of("g_1") == []
    assert len(joins) == 0


class Seen:
    """Every `rt.>` message up to the `END` marker."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Fanout]] = []
        self.ended = asyncio.Event()

    async def on(self, msg: Msg) -> None:
        if msg.subject == END:
            self.ended.set()
        else:
            self.messages.append((msg.subject, _fanout.decode(msg.data)))

    async def until_end(self, bus: Bus) -> list[tuple[str, Fanout]]:
        await bus.publish(END, b"")
        await asyncio.wait_for(self.ended.wait(), timeout=5)
        self.ended.clear()
        got, self.messages = self.messages, []
        return got


@pytest_asyncio.fixture
async def seen(nats_url: str) -> AsyncIterator[Seen]:
    bus = await Bus.connect(nats_url, name="listener")
    seen = Seen()
    await bus.subscribe("rt.>", seen.on)
    await bus.flush()
    yield seen
    await bus.close()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


def _updated() -> server.GroupUpdated:
    return server.GroupUpdated(group_id="g_1", updated_by="alice", name="new name")


async def test_room_events_after_a_join_are_copied_to_the_new_members(
    nats_url: str, seen: Seen
) -> None:
    # Two worker processes: the join is made by one, the next room event by the other.
    joiner = await Bus.connect(nats_url, name="joiner")
    other = await Bus.connect(nats_url, name="other")
    try:
        for bus, domain in ((joiner, "groups"), (other, "messages")):
            await bus.track_joins(domain)
            await bus.flush()
        # Each service tells its own joins on its own subject (per-service NATS users).
        assert joiner.joins_subject == "evt.groups.joins"
        await Publisher(joiner).to_user("bob", "group:member:added", _updated(), join=["g_1"])
        await joiner.flush()
        await _until(lambda: other.joins.of("g_1") == ["bob"], "join never heard")
        await seen.until_end(joiner)

        await Publisher(other).to_room("g_1", "group:updated", _updated())
        room, copy = await seen.until_end(other)
        assert room[0] == subjects.room("g_1")
        assert copy[0] == subjects.user("bob")
        assert room[1].once_id is not None
        assert copy[1].once_id == room[1].once_id
        assert (copy[1].room_copy, room[1].room_copy) == ("g_1", None)
        assert copy[1].data == room[1].data

        # Several new members: one copy on rt.users; the skipped user gets none.
        other.joins.joined(["carol", "dave"], ["g_1"])
        await Publisher(other).to_room("g_1", "group:updated", _updated(), skip_user="dave")
        (_, room2), (subject, copy2) = await seen.until_end(other)
        assert (subject, copy2.users) == (subjects.USERS_FANOUT, ["bob", "carol"])
        assert copy2.once_id == room2.once_id

        # Bob left: no copy for him; a room nobody joined lately: no copy, no once_id.
        await Publisher(joiner).membership("bob", leave=["g_1"])
        other.joins.left(["carol", "dave"], ["g_1"])
        await joiner.flush()
        await _until(lambda: not other.joins.of("g_1"), "leave never heard")
        await seen.until_end(joiner)
        await Publisher(other).to_room("g_1", "group:updated", _updated())
        await Publisher(other).to_room("g_2", "group:updated", _updated())
        plain = await seen.until_end(other)
        assert [s for s, _ in plain] == [subjects.room("g_1"), subjects.room("g_2")]
        assert all(f.once_id is None for _, f in plain)
    finally:
        await joiner.close()
        await other.close()
