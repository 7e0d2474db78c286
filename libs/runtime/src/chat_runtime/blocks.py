"""Cached "hidden sets": for a user, everyone with a block between them (either way).

The users service decides the blocking rule (`cmd.users.hidden`, the set form of
`cmd.users.block_state`); services that check many pairs of one user keep the answers
here: the messages send path (DMs across a block are refused) and the gateway (typing
and presence pages). An entry is dropped when `evt.users.block` names its user (every
process hears every change: subscribe `on_change` without a queue group) and is never
older than `ttl_s`, in case an event was lost. A per-user generation counter keeps an
answer that was in flight during a change out of the cache, so a block is never
forgotten for a whole TTL. A user with no blocks costs a dict look-up.
"""

from __future__ import annotations

import time

import msgspec
from nats.aio.msg import Msg

from chat_contracts import subjects
from chat_contracts.bus import Actor, BlockChanged, Hidden, HiddenQuery
from chat_runtime.bus import Bus

_HIDDEN = subjects.command(subjects.USERS, "hidden")
_changed = msgspec.msgpack.Decoder(BlockChanged)


class HiddenSets:
    """`cmd.users.hidden` answers, cached per user."""

    def __init__(
        self,
        bus: Bus,
        *,
        ttl_s: float = 60.0,
        max_entries: int = 100_000,
        timeout_ms: int = 2_000,
    ) -> None:
        self._bus = bus
        self._ttl = ttl_s
        self._max = max_entries
        self._timeout_ms = timeout_ms
        self._entries: dict[str, tuple[float, frozenset[str]]] = {}
        self._generation: dict[str, int] = {}
        self._epoch = 0

    async def of(self, user_id: str) -> frozenset[str]:
        """Users with a block between them and `user_id`.

        Raises `RetryableError` when the users service does not answer.
        """
        now = time.monotonic()
        hit = self._entries.get(user_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        before = (self._epoch, self._generation.get(user_id, 0))
        found = await self._bus.query(
            _HIDDEN,
            HiddenQuery(user_id=user_id),
            Hidden,
            actor=Actor(user_id=user_id, name=""),
            timeout_ms=self._timeout_ms,
        )
        answer = frozenset(found.user_ids)
        if before == (self._epoch, self._generation.get(user_id, 0)):
            if len(self._entries) >= self._max:
                self._entries.clear()  # bounded memory; refills from the service
            self._entries[user_id] = (now + self._ttl, answer)
        return answer

    def forget(self, change: BlockChanged) -> None:
        """Both users' sets changed."""
        if len(self._generation) >= self._max:
            self._generation.clear()
            self._entries.clear()
            self._epoch += 1
        for user_id in (change.blocker_id, change.blocked_id):
            self._entries.pop(user_id, None)
            self._generation[user_id] = self._generation.get(user_id, 0) + 1

    async def on_change(self, msg: Msg) -> None:
        """`evt.users.block` subscription callback."""
        try:
            self.forget(_changed.decode(msg.data))
        except msgspec.DecodeError:
            self._entries.clear()
            self._epoch += 1
