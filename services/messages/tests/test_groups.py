"""The membership cache answers repeat questions itself and forgets on change."""

from __future__ import annotations

import msgspec

from chat_contracts.bus import Actor, Membership, MembershipChanged
from chat_messages.groups import CachingGroupDirectory

AMY = Actor(user_id="amy", name="Amy")


class CountingDirectory:
    """The answers the groups service would give, counting the questions."""

    def __init__(self) -> None:
        self.asked = 0
        self.role: str | None = "MEMBER"

    async def membership(self, actor: Actor, group_id: str) -> Membership:
        self.asked += 1
        return Membership(exists=True, member_count=2, role=self.role)  # type: ignore[arg-type]

    async def mine(self, actor: Actor) -> list[str]:
        return ["g_1"]


async def test_repeat_questions_are_answered_from_memory() -> None:
    inner = CountingDirectory()
    cache = CachingGroupDirectory(inner)
    for _ in range(5):
        assert (await cache.membership(AMY, "g_1")).role == "MEMBER"
    assert inner.asked == 1


async def test_a_membership_change_makes_the_next_answer_fresh() -> None:
    inner = CountingDirectory()
    cache = CachingGroupDirectory(inner)
    await cache.membership(AMY, "g_1")
    inner.role = None  # Amy was removed
    cache.forget(MembershipChanged(group_id="g_1", user_id="amy"))
    assert (await cache.membership(AMY, "g_1")).role is None
    assert inner.asked == 2


async def test_entries_expire_and_undecodable_events_clear_everything() -> None:
    inner = CountingDirectory()
    cache = CachingGroupDirectory(inner, ttl_s=0.0)
    await cache.membership(AMY, "g_1")
    await cache.membership(AMY, "g_1")
    assert inner.asked == 2  # ttl 0: never served from memory

    cache = CachingGroupDirectory(inner, ttl_s=60)
    await cache.membership(AMY, "g_2")

    class Garbage:
        data = b"\xc1"

    await cache.on_change(Garbage())  # type: ignore[arg-type]
    await cache.membership(AMY, "g_2")
    assert inner.asked == 4


def test_change_events_round_trip() -> None:
    change = MembershipChanged(group_id="g_1")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(change), type=MembershipChanged) == change
