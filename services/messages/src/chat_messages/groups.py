"""What this service asks the groups service: is a user in a group, and which groups."""

from __future__ import annotations

import time
from typing import Protocol

import msgspec
from nats.aio.msg import Msg

from chat_contracts import subjects
from chat_contracts.bus import (
    Actor,
    ChatIds,
    Empty,
    Membership,
    MembershipChanged,
    MembershipQuery,
)
from chat_runtime.bus import Bus

#: Below the gateway's 5 s deadline for the whole command, so that a slow groups pool
#: becomes our own `retry` ack rather than the gateway giving up on us.
DEFAULT_GROUPS_TIMEOUT_MS = 2_000

#: `cmd.groups.*` queries this service asks.
MEMBERSHIP = subjects.command(subjects.GROUPS, "membership")
MINE = subjects.command(subjects.GROUPS, "mine")


class GroupDirectory(Protocol):
    """Group membership as the groups service knows it."""

    async def membership(self, actor: Actor, group_id: str) -> Membership:
        """Whether `group_id` exists and the actor's role in it (None = not a member)."""
        ...

    async def mine(self, actor: Actor) -> list[str]:
        """Ids of every group the actor belongs to."""
        ...


class BusGroupDirectory:
    """`GroupDirectory` over `cmd.groups.membership` and `cmd.groups.mine`.

    A refusal or `retry` from the groups service is raised as it came (`DomainError`,
    `RetryableError`), so the client's ack carries it; an unreadable answer raises
    `QueryError` (the runner's INTERNAL).
    """

    def __init__(self, bus: Bus, *, timeout_ms: int = DEFAULT_GROUPS_TIMEOUT_MS) -> None:
        self._bus = bus
        self._timeout_ms = timeout_ms

    async def membership(self, actor: Actor, group_id: str) -> Membership:
        """Ask `cmd.groups.membership` for the actor in `group_id`."""
        query = MembershipQuery(group_id=group_id, user_id=actor.user_id)
        return await self._bus.query(
            MEMBERSHIP, query, Membership, actor=actor, timeout_ms=self._timeout_ms
        )

    async def mine(self, actor: Actor) -> list[str]:
        """Ask `cmd.groups.mine` for the actor's groups."""
        mine = await self._bus.query(
            MINE, Empty(), ChatIds, actor=actor, timeout_ms=self._timeout_ms
        )
        return mine.chat_ids


class CachingGroupDirectory:
    """Membership answers kept in memory, dropped when the groups service says so.

    Every group `message:send`, `messages:history` and `message:read` needs the
    sender's membership; asking `cmd.groups.membership` each time cost a NATS round trip
    and ~0.2 ms of the groups worker's CPU per message (py-spy, 1,000 messages/s). The
    groups service publishes `evt.groups.membership` after every membership write and
    before its ack; an entry is also never older than `ttl_s`, in case an event was lost.

    A lookup in flight when a change of its group arrives may carry an answer from
    before the change: it is returned to its own (concurrent) command but not kept.
    Each group with lookups in flight has a generation, bumped by every change; an
    answer is cached only if its group's generation (and the cache's epoch, bumped when
    everything is dropped) did not move while it was asked. Without that, a removal
    arriving mid-lookup left the removed member's "member" answer cached for 60 s.
    """

    _changed = msgspec.msgpack.Decoder(MembershipChanged)

    def __init__(
        self, inner: GroupDirectory, *, ttl_s: float = 60.0, max_entries: int = 100_000
    ) -> None:
        self._inner = inner
        self._ttl = ttl_s
        self._max = max_entries
        #: group id -> user id -> (expiry, answer); a change drops the whole group.
        self._entries: dict[str, dict[str, tuple[float, Membership]]] = {}
        self._size = 0
        #: group id -> lookups in flight, and the changes seen while there were any
        #: (only groups being asked about: memory stays bounded by the lookups).
        self._in_flight: dict[str, int] = {}
        self._generation: dict[str, int] = {}
        #: Bumped when every entry is dropped at once (a change we could not read).
        self._epoch = 0

    async def membership(self, actor: Actor, group_id: str) -> Membership:
        """The cached answer, or the groups service's (then cached unless the group
        changed meanwhile)."""
        hit = self._entries.get(group_id, {}).get(actor.user_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        self._in_flight[group_id] = self._in_flight.get(group_id, 0) + 1
        asked_at = (self._epoch, self._generation.setdefault(group_id, 0))
        try:
            answer = await self._inner.membership(actor, group_id)
            if asked_at == (self._epoch, self._generation[group_id]):
                self._keep(group_id, actor.user_id, answer)
            return answer
        finally:
            left = self._in_flight[group_id] - 1
            if left:
                self._in_flight[group_id] = left
            else:
                del self._in_flight[group_id]
                del self._generation[group_id]

    def _keep(self, group_id: str, user_id: str, answer: Membership) -> None:
        if self._size >= self._max:
            self._entries.clear()  # bounded memory; refills from the service
            self._size = 0
        self._entries.setdefault(group_id, {})[user_id] = (time.monotonic() + self._ttl, answer)
        self._size += 1

    async def mine(self, actor: Actor) -> list[str]:
        """Not cached: asked once per `sync`."""
        return await self._inner.mine(actor)

    def forget(self, change: MembershipChanged) -> None:
        """Drop what a membership change makes stale (the whole group when it is gone,
        and every member's count with it), and what is being asked about it now."""
        self._size -= len(self._entries.pop(change.group_id, {}))
        if change.group_id in self._generation:
            self._generation[change.group_id] += 1

    def forget_all(self) -> None:
        """Drop every entry and every answer being asked for."""
        self._entries.clear()
        self._size = 0
        self._epoch += 1

    async def on_change(self, msg: Msg) -> None:
        """`evt.groups.membership` subscription callback."""
        try:
            self.forget(self._changed.decode(msg.data))
        except msgspec.DecodeError:
            self.forget_all()
