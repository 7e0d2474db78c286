"""Deadlines and disconnects, swept by every replica (one per interval, by a Redis lock).

Nothing is an in-process timer: ring timeouts, the 4 h limit and the 15 s disconnect
rule are stored deadlines and presence leases in Redis, so they fire even when the
worker that started the call died. Each sweep reads every ongoing call and the
presence of the parties that count (two pipelined round trips per 500 calls), applies
`domain.tick` to the snapshot, and runs an atomic transition only for calls where it
changes something.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.exceptions import RedisError

from chat_calls import domain
from chat_calls.handlers import CallHandlers
from chat_calls.state import CallState

log = logging.getLogger(__name__)

#: Calls read per round trip.
PAGE = 500


class Sweeper:
    """The sweep loop of one replica."""

    def __init__(self, handlers: CallHandlers, state: CallState, interval_ms: int) -> None:
        self._handlers = handlers
        self._state = state
        self._interval_ms = interval_ms
        self._owner = uuid.uuid4().hex

    async def run(self) -> None:
        """Every interval: sweep, if no other replica is sweeping this interval."""
        while True:
            await asyncio.sleep(self._interval_ms / 1000)
            try:
                if await self._state.take_sweep(self._owner, self._interval_ms):
                    await self.sweep()
            except (RedisError, OSError) as exc:
                log.warning("sweep failed: %s", exc)
            except Exception:
                log.exception("sweep failed")

    async def sweep(self) -> int:
        """One pass over every ongoing call; how many changed."""
        changed = 0
        start = 0
        while True:
            ids = await self._state.ongoing(start, PAGE)
            if not ids:
                return changed
            changed += await self._sweep_page(ids)
            if len(ids) < PAGE:
                return changed
            start += PAGE

    async def _sweep_page(self, ids: list[str]) -> int:
        calls = [c for c in await self._state.many(ids) if c is not None]
        parties = [uid for call in calls for uid in domain.watched(call)]
        online = await self._state.connected(parties)
        now = self._handlers.now_ms()
        changed = 0
        for call in calls:
            seen = {uid: online[uid] for uid in domain.watched(call)}
            if domain.tick(call, now, seen, self._handlers.timing) == call:
                continue
            if await self._handlers.tick(call.id, online) is not None:
                changed += 1
        return changed
