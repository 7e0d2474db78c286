"""The membership cache answers repeat questions itself, forgets on change, and never
keeps an answer that a change overtook."""

from __future__ import annotations

import asyncio

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


class GatedDirectory:
    """A groups service whose answers the test releases: each answer is the role as it
    was when the question arrived (the groups worker read it before a change)."""

    def __init__(self) -> None:
        self.role: str | None = "MEMBER"
        self.asked = asyncio.Event()
        self.release = asyncio.Event()
        self.questions = 0

    async def membership(self, actor: Actor, group_id: str) -> Membership:
        role = self.role
        self.questions += 1
        self.asked.set()
        await self.release.wait()
        return Membership(exists=True, member_count=2, role=role)  # type: ignore[arg-type]

    async def mine(self, actor: Actor) -> list[str]:
        return []


async def _lookup_in_flight() -> tuple[
    GatedDirectory, CachingGroupDirectory, asyncio.Future[Membership]
]:
    """A cache over a gated directory, and Amy's lookup waiting for its answer."""
    inner = GatedDirectory()
    cache = CachingGroupDirectory(inner)
    lookup = asyncio.ensure_future(cache.membership(AMY, "g_1"))
    await asyncio.wait_for(inner.asked.wait(), timeout=5)
    return inner, cache, lookup


async def test_a_change_during_a_lookup_keeps_its_answer_out_of_the_cache() -> None:
    inner, cache, lookup = await _lookup_in_flight()
    # Amy is removed; the removal's event arrives while the lookup is still out.
    inner.role = None
    cache.forget(MembershipChanged(group_id="g_1", user_id="amy"))
    inner.release.set()
    assert (await asyncio.wait_for(lookup, timeout=5)).role == "MEMBER"
    # After the removal was acknowledged, Amy is not a member: asked afresh, not the
    # stale answer kept for the next 60 s.
    assert (await cache.membership(AMY, "g_1")).role is None
    assert inner.questions == 2
    # The fresh answer is kept.
    assert (await cache.membership(AMY, "g_1")).role is None
    assert inner.questions == 2


async def test_an_unreadable_change_during_a_lookup_keeps_its_answer_out_too() -> None:
    inner, cache, lookup = await _lookup_in_flight()
    inner.role = None

    class Garbage:
        data = b"\xc1"

    await cache.on_change(Garbage())  # type: ignore[arg-type]
    inner.release.set()
    await asyncio.wait_for(lookup, timeout=5)
    assert (await cache.membership(AMY, "g_1")).role is None


async def test_a_change_of_another_group_does_not_stop_caching() -> None:
    inner, cache, lookup = await _lookup_in_flight()
    cache.forget(MembershipChanged(group_id="g_2", user_id="amy"))
    inner.release.set()
    await asyncio.wait_for(lookup, timeout=5)
    assert (await cache.membership(AMY, "g_1")).role == "MEMBER"
    assert inner.questions == 1
