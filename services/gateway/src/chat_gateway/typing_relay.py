"""Typing indicators (PROTOCOL.md, Typing): who may type where, throttle, expiry, relay.

- Typing goes only into a chat the typist belongs to: a room of the typist's, or a DM by
  `targetUserId` only when a DM between the two exists (found once, then remembered:
  DMs are never deleted).
- Groups above `limits.TYPING_MAX_GROUP_SIZE` members get no typing, whichever field
  (`groupId` or `conversationId`) names the group.
- Users with a block between them and the typist never get it (`skip_users`), and
  typing towards such a user by `targetUserId` is dropped.
- A start is relayed at most once per user per chat per 2 s (a Redis `SET NX PX`, so the
  throttle holds across gateways); every start renews a local 10 s timer that emits
  `typing:stop` if the client never does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis

from chat_contracts import DomainError, ids, limits, subjects
from chat_contracts import client as c
from chat_contracts import server as s
from chat_contracts.bus import Actor, ChatIds, Empty, Fanout, Membership, MembershipQuery
from chat_gateway.registry import LocalSocket, Registry
from chat_runtime.blocks import HiddenSets
from chat_runtime.bus import Bus, encode, encode_json

#: Called to relay a stop when a timer fires: (who was typing, chat key).
OnExpire = Callable[[Actor, str], Coroutine[Any, Any, None]]

#: How long a group's member count is trusted for the size rule (s).
MEMBER_COUNT_TTL_S = 30.0
#: Typing by `targetUserId` is keyed `user:<peer>` (no conversation id is sent).
PEER_KEY = "user:"

_MEMBERSHIP = subjects.command(subjects.GROUPS, "membership")
_MESSAGES_MINE = subjects.command(subjects.MESSAGES, "mine")


class TypingTimers:
    """Throttle and expiry state for typing indicators started on this gateway."""

    def __init__(self, redis: Redis, expiry_ms: int, on_expire: OnExpire) -> None:
        self._redis = redis
        self._expiry_s = expiry_ms / 1000
        self._on_expire = on_expire
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, actor: Actor, chat: str) -> bool:
        """Renew the expiry; True when this start must be relayed (not throttled)."""
        self._arm(actor, chat)
        ok = await self._redis.set(
            f"ty:{chat}:{actor.user_id}", b"1", nx=True, px=limits.TYPING_THROTTLE_MS
        )
        return bool(ok)

    async def stop(self, user_id: str, chat: str) -> bool:
        """Clear the state; True when a start was pending (a stop is worth relaying)."""
        handle = self._timers.pop((user_id, chat), None)
        if handle is not None:
            handle.cancel()
        # The next start after an explicit stop is relayed at once.
        await self._redis.delete(f"ty:{chat}:{user_id}")
        return handle is not None

    def active(self, user_id: str) -> list[str]:
        """Chats where `user_id` is typing (started here, not stopped or expired)."""
        return [chat for (uid, chat) in self._timers if uid == user_id]

    def _arm(self, actor: Actor, chat: str) -> None:
        key = (actor.user_id, chat)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self._expiry_s, self._fire, actor, chat)

    def _fire(self, actor: Actor, chat: str) -> None:
        self._timers.pop((actor.user_id, chat), None)
        task = asyncio.get_running_loop().create_task(self._on_expire(actor, chat))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Cancel every timer."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


class TypingRelay:
    """`typing:start` / `typing:stop`: the rules above, then one publish per relay."""

    def __init__(
        self,
        bus: Bus,
        redis: Redis,
        registry: Registry,
        hidden: HiddenSets,
        *,
        expiry_ms: int,
    ) -> None:
        self._bus = bus
        self._registry = registry
        self._hidden = hidden
        self.timers = TypingTimers(redis, expiry_ms, self.expired)
        self._member_counts: dict[str, tuple[float, int]] = {}
        #: (typist, peer) pairs known to share a DM.
        self._dms: set[tuple[str, str]] = set()

    async def start(self, sock: LocalSocket, p: c.TypingChange) -> None:
        """`typing:start` (no ack: a refused one is dropped)."""
        target = await self._target(sock, p)
        if target is not None and await self.timers.start(sock.actor, target):
            await self._relay("typing:start", sock.actor, target)

    async def stop(self, sock: LocalSocket, p: c.TypingChange) -> None:
        """`typing:stop`."""
        target = await self._target(sock, p)
        if target is not None and await self.timers.stop(sock.actor.user_id, target):
            await self._relay("typing:stop", sock.actor, target)

    async def expired(self, actor: Actor, target: str) -> None:
        """No renewal in 10 s, or the typist's last socket left: tell the others."""
        await self.timers.stop(actor.user_id, target)
        await self._relay("typing:stop", actor, target)

    async def gone(self, actor: Actor) -> None:
        """The typist's last local socket left: stop everything it was typing."""
        for chat in self.timers.active(actor.user_id):
            await self.expired(actor, chat)

    def close(self) -> None:
        """Cancel every timer."""
        self.timers.close()

    async def _target(self, sock: LocalSocket, p: c.TypingChange) -> str | None:
        """The room (or `user:<id>` for a DM by peer) typing goes to; None = not allowed.

        Raises `RetryableError` when a service the rules ask does not answer.
        """
        try:
            return await self._allowed(sock.actor, p)
        except DomainError:
            return None  # e.g. the group is gone: nothing to relay

    async def _allowed(self, actor: Actor, p: c.TypingChange) -> str | None:
        uid = actor.user_id
        if p.target_user_id is not None:
            peer = p.target_user_id
            if peer == uid or peer in await self._hidden.of(actor.user_id):
                return None
            return PEER_KEY + peer if await self._shares_dm(actor, peer) else None
        chat = p.conversation_id or p.group_id or ""
        if not self._registry.in_room(uid, chat):
            return None
        is_group = not ids.is_conversation(chat)
        if is_group and await self._member_count(actor, chat) > limits.TYPING_MAX_GROUP_SIZE:
            return None
        return chat

    async def _shares_dm(self, actor: Actor, peer: str) -> bool:
        """Whether a DM between the typist and `peer` exists (the peer's DMs ∩ the
        typist's rooms); a found pair is remembered."""
        if (actor.user_id, peer) in self._dms:
            return True
        peers = await self._bus.query(
            _MESSAGES_MINE, Empty(), ChatIds, actor=Actor(user_id=peer, name=""), timeout_ms=2_000
        )
        if self._registry.rooms_of(actor.user_id).isdisjoint(peers.chat_ids):
            return False
        self._dms.add((actor.user_id, peer))
        return True

    async def _member_count(self, actor: Actor, group_id: str) -> int:
        cached = self._member_counts.get(group_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        query = MembershipQuery(group_id=group_id, user_id=actor.user_id)
        membership = await self._bus.query(_MEMBERSHIP, query, Membership, actor=actor)
        count = membership.member_count
        self._member_counts[group_id] = (time.monotonic() + MEMBER_COUNT_TTL_S, count)
        return count

    async def _relay(self, event: str, actor: Actor, target: str) -> None:
        is_dm_by_peer = target.startswith(PEER_KEY)
        chat = "" if is_dm_by_peer else target
        typing = s.TypingEvent(
            user_id=actor.user_id,
            user_name=actor.name,
            user_avatar=actor.avatar,
            conversation_id=chat if ids.is_conversation(chat) else None,
            group_id=chat if chat and not ids.is_conversation(chat) else None,
        )
        hidden = sorted(await self._hidden.of(actor.user_id))
        fanout = Fanout(
            event=event, data=encode_json(typing), skip_user=actor.user_id, skip_users=hidden
        )
        subject = (
            subjects.user(target.removeprefix(PEER_KEY)) if is_dm_by_peer else subjects.room(chat)
        )
        await self._bus.publish(subject, encode(fanout))
