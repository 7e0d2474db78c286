"""Call state in Redis: every transition is one optimistic transaction (WATCH/MULTI).

Keys: `call:<id>` the msgpack `domain.Call` (~300 bytes: the sweeper reads them all);
`call:offer:<id>` the offer of a call that rings by push (up to 100 KB, read once when
the callee connects); `call:user:<userId>` the call a user is in
(ringing or active: the busy rule); `calls:due` a sorted set of ongoing call ids scored
by their next deadline (ms), which the sweeper of any replica polls; `calls:sweep` a
short lock so that one replica sweeps per interval. A transition reads the call, runs
the pure rule (`domain`), and writes the result only if nothing it read changed
meanwhile (else it runs again on the new value), so two replicas racing on one call
(two answers from two devices) serialise, and a worker that dies mid-way leaves the
previous state intact for any other replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from chat_calls import domain
from chat_calls.domain import Call, Phase, Timing
from chat_contracts import DomainError, ErrorCode
from chat_runtime import presence

DUE_KEY: Final = "calls:due"
SWEEP_LOCK: Final = "calls:sweep"
#: An ended call stays readable this long, so a late answer or end gets a clear
#: CONFLICT (or an idempotent ok) instead of NOT_FOUND (ms).
ENDED_KEEP_MS: Final = 10 * 60 * 1000
#: Optimistic transactions retried this often under contention before giving up
#: (two devices answering at once need 2).
MAX_ATTEMPTS: Final = 20

_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(Call)


def _load(raw: bytes | str) -> Call:
    return _decoder.decode(raw.encode() if isinstance(raw, str) else raw)


T = TypeVar("T")


def call_key(call_id: str) -> str:
    """The stored call."""
    return f"call:{call_id}"


def offer_key(call_id: str) -> str:
    """The offer kept for a callee rung by push."""
    return f"call:offer:{call_id}"


def user_key(user_id: str) -> str:
    """The call a user is a party of, while it rings or runs."""
    return f"call:user:{user_id}"


class Contended(Exception):
    """A transaction lost the race `MAX_ATTEMPTS` times in a row."""


class CallState:
    """Atomic call transitions on one Redis."""

    def __init__(self, redis: Redis, timing: Timing) -> None:
        self.redis = redis
        self.timing = timing

    def _ttl_ms(self, call: Call) -> int:
        if call.phase is Phase.ENDED:
            return ENDED_KEEP_MS
        # Longer than any deadline, so a forgotten key still disappears on its own.
        return self.timing.ring_ms + self.timing.max_ms + ENDED_KEEP_MS

    def _write(self, pipe: Pipeline, before: Call | None, call: Call) -> None:
        pipe.set(call_key(call.id), _encode(call), px=self._ttl_ms(call))
        due = domain.deadline(call, self.timing)
        if due is None:
            pipe.zrem(DUE_KEY, call.id)
            if before is not None and before.phase is not Phase.ENDED:
                pipe.delete(user_key(call.caller_id), user_key(call.callee_id))
        else:
            pipe.zadd(DUE_KEY, {call.id: due})
            if before is None:
                ttl = self._ttl_ms(call)
                pipe.set(user_key(call.caller_id), call.id, px=ttl)
                pipe.set(user_key(call.callee_id), call.id, px=ttl)

    async def create(
        self, call: Call, decide: Callable[[bool, bool], Call], offer: bytes = b""
    ) -> Call:
        """Store a new call. `decide(caller_busy, callee_busy)` returns the call to store
        (ringing, or ended as refused) or raises; both users' slots are taken atomically.
        `offer` (JSON) is kept while a call rings undelivered (its callee rung by push)."""
        keys = [user_key(call.caller_id), user_key(call.callee_id)]
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*keys)
                    caller_in, callee_in = await pipe.mget(keys)
                    decided = decide(caller_in is not None, callee_in is not None)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self._write(pipe, None, decided)
                    if decided.phase is Phase.RINGING and not decided.delivered:
                        pipe.set(offer_key(call.id), offer, px=self.timing.ring_ms + ENDED_KEEP_MS)
                    await pipe.execute()
                    return decided
                except WatchError:
                    continue
        raise Contended(call.id)

    async def get(self, call_id: str) -> Call | None:
        """The stored call, if it exists (or ended less than `ENDED_KEEP_MS` ago)."""
        raw = await self.redis.get(call_key(call_id))
        return None if raw is None else _load(raw)

    async def change(
        self, call_id: str, rule: Callable[[Call], Call | None]
    ) -> tuple[Call, Call | None]:
        """Apply `rule` atomically; (before, after), after None when the rule changed nothing.

        NOT_FOUND when there is no such call; the rule's `DomainError`s pass through.
        """
        key = call_key(call_id)
        for _ in range(MAX_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise DomainError(ErrorCode.NOT_FOUND, "no such call", field="callId")
                    before = _load(raw)
                    after = rule(before)
                    if after is None or after == before:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return before, None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    self._write(pipe, before, after)
                    await pipe.execute()
                    return before, after
                except WatchError:
                    continue
        raise Contended(call_id)

    async def offer(self, call_id: str) -> bytes | None:
        """The offer (JSON) of a call rung by push, while it rings."""
        raw = await self.redis.get(offer_key(call_id))
        return raw.encode() if isinstance(raw, str) else raw

    async def due(self, now_ms: int, limit: int = 500) -> list[str]:
        """Ongoing calls whose next deadline has come."""
        ids = await self.redis.zrangebyscore(DUE_KEY, "-inf", now_ms, start=0, num=limit)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def ongoing(self, start: int, count: int) -> list[str]:
        """A page of every ringing or active call (by deadline)."""
        ids = await self.redis.zrange(DUE_KEY, start, start + count - 1)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def many(self, call_ids: list[str]) -> list[Call | None]:
        """Several calls in one round trip."""
        if not call_ids:
            return []
        raws = await self.redis.mget([call_key(i) for i in call_ids])
        return [None if raw is None else _load(raw) for raw in raws]

    async def connected(self, user_ids: list[str]) -> dict[str, bool]:
        """Which users have a socket on a live gateway now (the gateway's presence
        leases are in wall-clock ms, whatever clock the rules run on)."""
        unique = list(dict.fromkeys(user_ids))
        flags = await presence.connected(self.redis, unique, int(time.time() * 1000))
        return dict(zip(unique, flags, strict=True))

    async def take_sweep(self, owner: str, interval_ms: int) -> bool:
        """The sweep of this interval, if no other replica took it."""
        return bool(await self.redis.set(SWEEP_LOCK, owner, nx=True, px=interval_ms))
