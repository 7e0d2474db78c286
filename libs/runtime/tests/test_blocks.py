"""Hidden-set cache over a real nats-server, with a stand-in users responder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts.bus import BlockChanged, Command, HiddenQuery, Reply
from chat_runtime.blocks import HiddenSets
from chat_runtime.bus import Bus, encode


class Users:
    """Answers `cmd.users.hidden` from `sets`; `gate` holds answers while cleared."""

    def __init__(self) -> None:
        self.sets: dict[str, list[str]] = {}
        self.asked = 0
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self._decoder = msgspec.msgpack.Decoder(Command[HiddenQuery])

    async def answer(self, msg: Msg) -> None:
        self.asked += 1
        self.arrived.set()
        user = self._decoder.decode(msg.data).payload.user_id
        await self.gate.wait()
        result = encode({"userIds": self.sets.get(user, [])})
        await msg.respond(encode(Reply(status="ok", result=result)))


@pytest_asyncio.fixture
async def setup(nats_url: str) -> AsyncIterator[tuple[HiddenSets, Users]]:
    bus = await Bus.connect(nats_url, name="blocks-test")
    users = Users()
    await bus.subscribe("cmd.users.hidden", users.answer)
    await bus.flush()
    try:
        yield HiddenSets(bus), users
    finally:
        await bus.close()


async def test_answers_are_cached_until_a_block_names_the_user(
    setup: tuple[HiddenSets, Users],
) -> None:
    hidden, users = setup
    users.sets["ann"] = ["bob"]
    assert await hidden.of("ann") == {"bob"}
    assert await hidden.of("ann") == {"bob"}
    assert users.asked == 1
    users.sets["ann"] = ["bob", "cat"]
    hidden.forget(BlockChanged(blocker_id="cat", blocked_id="ann", blocked=True))
    assert await hidden.of("ann") == {"bob", "cat"}
    assert users.asked == 2


async def test_an_answer_overtaken_by_a_change_is_not_cached(
    setup: tuple[HiddenSets, Users],
) -> None:
    hidden, users = setup
    users.gate.clear()
    lookup = asyncio.ensure_future(hidden.of("ann"))
    await asyncio.wait_for(users.arrived.wait(), 5)
    # The block lands while the (now stale) answer is on its way.
    hidden.forget(BlockChanged(blocker_id="ann", blocked_id="bob", blocked=True))
    users.gate.set()
    assert await lookup == frozenset()
    users.sets["ann"] = ["bob"]
    assert await hidden.of("ann") == {"bob"}  # asked again, not the stale empty set
    assert users.asked == 2
