"""The pipelined EVALSHA client against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from chat_gateway.ratelimit import Bucket, RateLimiter
from chat_gateway.resp import RespError, ScriptRunner, encode_command, parse_reply


def test_encode_and_parse() -> None:
    assert encode_command(b"GET", b"k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    value, pos = parse_reply(b"*2\r\n:1\r\n$3\r\nabc\r\n+OK", 0)
    assert value == [1, b"abc"]
    assert pos == 17
    error, _ = parse_reply(b"-NOSCRIPT no\r\n", 0)
    assert isinstance(error, RespError)


async def test_script_loads_on_first_use_and_pipelines(redis_url: str) -> None:
    runner = ScriptRunner(redis_url, "return {tonumber(ARGV[1]) * 2, KEYS[1]}")
    try:
        replies = await asyncio.gather(*(runner(["k"], [i]) for i in range(50)))
        assert replies == [[i * 2, b"k"] for i in range(50)]
        with pytest.raises(RespError):
            await ScriptRunner(redis_url, "return redis.call('NOPE')")([], [])
    finally:
        runner.close()


async def test_token_bucket_allows_the_burst_then_asks_to_wait(redis_url: str) -> None:
    limiter = RateLimiter(redis_url)
    try:
        bucket = Bucket("t", per_second=5, burst=10)
        waits = [await limiter.take("u1", bucket) for _ in range(12)]
        assert waits[:10] == [0] * 10
        assert all(w > 0 for w in waits[10:])
        # Another user has a bucket of their own.
        assert await limiter.take("u2", bucket) == 0
    finally:
        limiter.close()
