"""What the users service asks the groups and messages services: chats, members, sizes.

A user's contacts are the members of its chats (DM peers and members of shared groups);
those chats are the rooms presence and status are published on. Group sizes are cached
(the groups service announces every membership change on `evt.groups.membership`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TypeVar

import msgspec
from nats.aio.msg import Msg

from chat_contracts import ids, subjects
from chat_contracts.bus import (
    Actor,
    ChatIds,
    Empty,
    Members,
    Membership,
    MembershipChanged,
    MembershipQuery,
    MembersQuery,
)
from chat_runtime.bus import Bus

T = TypeVar("T")

#: Below the gateway's 5 s command deadline, so a slow pool becomes our own retry ack.
QUERY_TIMEOUT_MS = 2_000
#: Contact checks of a `presence:last_seen` run this many DM look-ups at once.
PARALLEL_LOOKUPS = 16

_GROUPS_MINE = subjects.command(subjects.GROUPS, "mine")
_MESSAGES_MINE = subjects.command(subjects.MESSAGES, "mine")
_MEMBERS = subjects.command(subjects.GROUPS, "members")
_MEMBERSHIP = subjects.command(subjects.GROUPS, "membership")
_changed = msgspec.msgpack.Decoder(MembershipChanged)


class ChatDirectory:
    """Chats and group members over `cmd.groups.*` / `cmd.messages.*` (`Bus.query`: a
    refusal raises `DomainError`, no answer `RetryableError`, as the worker replies)."""

    def __init__(self, bus: Bus, *, size_ttl_s: float = 60.0) -> None:
        self._bus = bus
        self._size_ttl = size_ttl_s
        #: group id -> (expiry, member count).
        self._sizes: dict[str, tuple[float, int]] = {}

    async def _ask(self, subject: str, user_id: str, payload: object, kind: type[T]) -> T:
        actor = Actor(user_id=user_id, name="")
        return await self._bus.query(
            subject, payload, kind, actor=actor, timeout_ms=QUERY_TIMEOUT_MS
        )

    async def groups_of(self, user_id: str) -> list[str]:
        """The user's groups."""
        return (await self._ask(_GROUPS_MINE, user_id, Empty(), ChatIds)).chat_ids

    async def dms_of(self, user_id: str) -> list[str]:
        """The user's DM conversations."""
        return (await self._ask(_MESSAGES_MINE, user_id, Empty(), ChatIds)).chat_ids

    async def chats_of(self, user_id: str) -> list[str]:
        """Every chat of the user (its rooms)."""
        groups, dms = await asyncio.gather(self.groups_of(user_id), self.dms_of(user_id))
        return [*groups, *dms]

    async def members(self, user_id: str, group_id: str) -> list[str]:
        """The members of a group `user_id` belongs to."""
        query = MembersQuery(group_id=group_id)
        return (await self._ask(_MEMBERS, user_id, query, Members)).user_ids

    async def size(self, user_id: str, group_id: str) -> int:
        """A group's member count (cached until a membership change or `size_ttl_s`)."""
        now = time.monotonic()
        hit = self._sizes.get(group_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        query = MembershipQuery(group_id=group_id, user_id=user_id)
        count = (await self._ask(_MEMBERSHIP, user_id, query, Membership)).member_count
        self._sizes[group_id] = (now + self._size_ttl, count)
        return count

    async def fanout_rooms(self, user_id: str, rooms: Iterable[str], max_group: int) -> list[str]:
        """The rooms a presence or status change of `user_id` is published on: every DM,
        and the groups of at most `max_group` members."""
        rooms = list(dict.fromkeys(rooms))
        groups = [room for room in rooms if ids.is_group(room)]
        sizes = await asyncio.gather(*(self.size(user_id, g) for g in groups))
        large = {g for g, n in zip(groups, sizes, strict=True) if n > max_group}
        return [room for room in rooms if room not in large]

    async def contacts_among(self, user_id: str, candidates: Iterable[str]) -> set[str]:
        """Those of `candidates` that share a chat with `user_id`.

        Members of the user's groups first (one look-up per group), then, for the rest, a
        DM in common (one look-up per remaining candidate, `PARALLEL_LOOKUPS` at a time).
        """
        wanted = set(candidates) - {user_id}
        if not wanted:
            return set()
        groups, dms = await asyncio.gather(self.groups_of(user_id), self.dms_of(user_id))
        found: set[str] = set()
        for members in await asyncio.gather(*(self.members(user_id, g) for g in groups)):
            found.update(wanted.intersection(members))
        rest = sorted(wanted - found)
        mine = set(dms)
        if rest and mine:
            slots = asyncio.Semaphore(PARALLEL_LOOKUPS)

            async def shares_dm(other: str) -> bool:
                async with slots:
                    return not mine.isdisjoint(await self.dms_of(other))

            flags = await asyncio.gather(*(shares_dm(other) for other in rest))
            found.update(other for other, flag in zip(rest, flags, strict=True) if flag)
        return found

    async def on_membership(self, msg: Msg) -> None:
        """`evt.groups.membership`: a group's size may have changed."""
        try:
            self._sizes.pop(_changed.decode(msg.data).group_id, None)
        except msgspec.DecodeError:
            self._sizes.clear()
