"""The sweeps: status expiry on an injected clock across a store restart; offline from
Redis state as gateways leave it (real redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest_asyncio
from redis.asyncio import Redis

from chat_contracts import ErrorCode, RetryableError
from chat_runtime import presence as keys
from chat_runtime.clock import ManualClock
from chat_users.domain import CustomStatus
from chat_users.store.sqlite import SqliteUserStore
from chat_users.sweeper import PresenceSweeper, StatusSweeper

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


async def test_status_expiry_is_stored_and_swept_after_a_restart(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    cleared: list[str] = []

    async def on_expired(user_id: str) -> None:
        cleared.append(user_id)

    path = tmp_path / "users.sqlite3"
    store = SqliteUserStore(path)
    await store.open()
    expires = T0 + timedelta(minutes=5)
    await store.set_status("ann", CustomStatus(user_id="ann", text="x", expires_at=expires))
    await store.set_status("bob", CustomStatus(user_id="bob", text="y"))
    assert await StatusSweeper(store, clock, on_expired).sweep() == 0
    await store.close()  # the worker stops

    clock.advance(minutes=10)
    store = SqliteUserStore(path)  # ... and starts again
    await store.open()
    try:
        first, second = (StatusSweeper(store, clock, on_expired) for _ in range(2))
        counts = await asyncio.gather(first.sweep(), second.sweep())
        assert sorted(counts) == [0, 1]  # two replicas, one announcement
        assert cleared == ["ann"]
        assert set(await store.statuses(["ann", "bob"])) == {"bob"}
    finally:
        await store.close()


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


async def test_users_of_a_silent_gateway_go_offline_once(redis: Redis) -> None:
    now_ms = int(time.time() * 1000)
    beat = now_ms - 5_000  # "gw-dead" last beat 5 s ago
    await redis.zadd(keys.NODES, {"gw-dead": beat, "gw-live": now_ms})
    await redis.sadd(keys.node_users_key("gw-dead"), "ann", "bob")
    await redis.sadd(keys.node_users_key("gw-live"), "bob")
    # Leases run for a minute: a dead gateway's leases must not keep its users online.
    for user, node in (("ann", "gw-dead"), ("bob", "gw-dead"), ("bob", "gw-live")):
        await redis.zadd(keys.conns_key(user), {node: now_ms + 60_000})
    offline: list[tuple[str, datetime]] = []

    async def on_offline(user_id: str, seen: datetime) -> None:
        offline.append((user_id, seen))

    sweepers = [
        PresenceSweeper(redis, on_offline, grace_ms=200, heartbeat_ttl_ms=1_000) for _ in range(2)
    ]
    await asyncio.gather(*(s.sweep() for s in sweepers))
    assert offline == []  # the grace runs
    assert await redis.zscore(keys.NODES, "gw-dead") is None
    assert await redis.zscore(keys.conns_key("ann"), "gw-dead") is None
    assert await redis.get(keys.grace_key("bob")) is None  # still on gw-live

    deadline = time.monotonic() + 5
    while not offline and time.monotonic() < deadline:
        await asyncio.gather(*(s.sweep() for s in sweepers))
        await asyncio.sleep(0.05)
    assert offline == [("ann", datetime.fromtimestamp(beat / 1000, UTC))]
    await asyncio.gather(*(s.sweep() for s in sweepers))
    assert len(offline) == 1


async def test_a_reconnect_within_the_grace_cancels_the_offline(redis: Redis) -> None:
    now_ms = int(time.time() * 1000)
    await redis.set(keys.grace_key("ann"), now_ms)
    await redis.zadd(keys.PENDING, {"ann": now_ms - 1})
    await redis.zadd(keys.conns_key("ann"), {"gw": now_ms + 60_000})  # back on a gateway
    offline: list[str] = []

    async def on_offline(user_id: str, seen: datetime) -> None:
        offline.append(user_id)

    sweeper = PresenceSweeper(redis, on_offline, grace_ms=200, heartbeat_ttl_ms=1_000)
    assert await sweeper.sweep() == 0
    assert offline == []
    assert await redis.zcard(keys.PENDING) == 0


async def test_a_directory_that_does_not_answer_pauses_the_round(redis: Redis) -> None:
    now_ms = int(time.time() * 1000)
    users = [f"u{i}" for i in range(5)]
    for user in users:
        await redis.set(keys.grace_key(user), now_ms - 10)
        await redis.zadd(keys.PENDING, {user: now_ms - 1})
    calls: list[str] = []

    async def unavailable(user_id: str, seen: datetime) -> None:
        calls.append(user_id)
        raise RetryableError(ErrorCode.UNAVAILABLE, "no groups worker", retry_after_ms=1_000)

    sweeper = PresenceSweeper(redis, unavailable, grace_ms=200, heartbeat_ttl_ms=1_000)
    assert await sweeper.sweep() == 0
    assert len(calls) == 1  # the first refusal ends the round
    # ... and every user of it is due again later, none lost, none due at once.
    pending = dict(await redis.zrange(keys.PENDING, 0, -1, withscores=True))
    assert {k.decode() for k in pending} == set(users)
    assert min(pending.values()) > now_ms
    announced: list[str] = []

    async def available(user_id: str, seen: datetime) -> None:
        announced.append(user_id)

    await redis.zadd(keys.PENDING, {user: now_ms - 1 for user in users})  # time passes
    assert await PresenceSweeper(
        redis, available, grace_ms=200, heartbeat_ttl_ms=1_000
    ).sweep() == len(users)
    assert sorted(announced) == users
