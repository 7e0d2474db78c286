"""The pipelined script client behind Sentinel (real primary, replica and sentinels).

Every connection it makes goes where the sentinels say the primary is; one that reaches
a replica (a stale answer, a demoted primary) meets READONLY and is dropped, so the next
call locates again. When the primary dies, calls fail (the gateway acks `retry`) until
the replica is promoted, then go there, where the replicated state already is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_gateway import redis_scripts
from chat_gateway.resp import RespError, ScriptRunner
from chat_runtime.redis_client import primary_locator
from chat_runtime.settings import RedisSettings
from chat_testkit.sentinel import MASTER, RedisSentinelSet
from chat_testkit.servers import Missing

BUCKET = [0.001, 10]  # 1 token/s, burst 10


@pytest.fixture(scope="module")
def redis_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelSet]:
    try:
        running = RedisSentinelSet(Path(tmp_path_factory.mktemp("sentinel")))
    except Missing as exc:
        pytest.skip(str(exc))
    yield running
    running.stop()


async def test_calls_follow_the_primary_through_sentinel(redis_set: RedisSentinelSet) -> None:
    settings = RedisSettings(
        redis_url="redis://unused.invalid:1/0",  # lends only its options (database 0)
        redis_sentinels=redis_set.addresses.split(","),
        redis_sentinel_master=MASTER,
    )
    locate = primary_locator(settings)
    assert locate is not None
    assert await locate() == ("127.0.0.1", redis_set.primary.port)

    # A connection made to a replica (stale address) meets READONLY and is dropped.
    answers = iter([("127.0.0.1", redis_set.replica.port)])

    async def stale_once() -> tuple[str, int]:
        return next(answers, None) or await locate()

    bucket = ScriptRunner(settings.redis_url, redis_scripts.TOKEN_BUCKET, locate=stale_once)
    try:
        with pytest.raises(RespError, match="READONLY"):
            await bucket(keys=["rl:t:u"], args=BUCKET)
        assert await bucket(keys=["rl:t:u"], args=BUCKET) == [1, 0]
        assert redis_set.primary.ask("EXISTS", "rl:t:u") == 1

        # The primary dies: calls fail fast until a replica is promoted, then reach it.
        redis_set.kill_primary()
        killed = time.monotonic()
        failures = 0
        while True:
            try:
                allowed, _ = await bucket(keys=["rl:t:u"], args=BUCKET)
                break
            except RespError:  # connection refused / no primary yet
                failures += 1
                assert time.monotonic() - killed < 20, "no failover"
                await asyncio.sleep(0.05)
        assert allowed == 1
        assert failures > 0
        # The bucket's state was replicated: 10 - 2 (+ the refill while it lasted).
        tokens = redis_set.replica.ask("HGET", "rl:t:u", "t")
        assert isinstance(tokens, bytes)
        assert 7.9 < float(tokens) < 8 + (time.monotonic() - killed) + 0.1
    finally:
        bucket.close()
