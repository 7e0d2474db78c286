"""The pipelined EVALSHA client against a real redis-server."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_gateway.ratelimit import Bucket, RateLimiter, lease_size
from chat_gateway.resp import RespError, ScriptRunner, encode_command, parse_reply
from chat_runtime.redis_auth import with_login
from chat_testkit.servers import Missing, RedisServer
from chat_testkit.tls import self_signed


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


# --- issue 6: reply deadline, AUTH/SELECT errors, TLS ------------------------------


async def test_a_hung_redis_fails_the_call_within_the_deadline(redis_url: str) -> None:
    runner = ScriptRunner(redis_url, "return 1", timeout_ms=300)
    blocker = Redis.from_url(redis_url)
    try:
        assert await runner([], []) == 1
        # A script that spins for 1.5 s blocks the (single-threaded) server: every
        # other client hangs (BUSY replies only start after lua-time-limit, 5 s).
        sleeping = asyncio.ensure_future(blocker.eval(_SPIN_1500_MS, 0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(RespError, match="did not answer"):
            await runner([], [])
        assert time.monotonic() - started < 1.0
        await sleeping
        # The next call reconnects and works again.
        assert await runner([], []) == 1
    finally:
        runner.close()
        await blocker.aclose()


_SPIN_1500_MS = """
local t = redis.call('TIME')
while true do
  local n = redis.call('TIME')
  if (n[1] - t[1]) * 1000000 + (n[2] - t[2]) > 1500000 then return 1 end
end
"""


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))


async def test_auth_errors_are_raised_not_ignored(redis_url: str) -> None:
    admin = Redis.from_url(redis_url)
    user = f"gw{os.getpid()}"
    await admin.acl_setuser(
        user, enabled=True, passwords=["+right-password"], commands=["+@all"], keys=["~*"]
    )
    try:
        good = ScriptRunner(_with_credentials(redis_url, user, "right-password"), "return 7")
        assert await good([], []) == 7
        good.close()
        bad = ScriptRunner(_with_credentials(redis_url, user, "wrong"), "return 7")
        with pytest.raises(RespError, match="AUTH failed"):
            await bad([], [])
        bad.close()
    finally:
        await admin.acl_deluser(user)
        await admin.aclose()


async def test_select_errors_are_raised_and_the_database_is_used(redis_url: str) -> None:
    script = "redis.call('SET', KEYS[1], 'x'); return 1"
    key = f"db-probe-{os.getpid()}"
    runner = ScriptRunner(redis_url + "?db=3", script)
    db3 = Redis.from_url(redis_url + "?db=3")
    try:
        await runner([key], [])
        assert await db3.get(key) == b"x"
    finally:
        runner.close()
        await db3.delete(key)
        await db3.aclose()
    bad = ScriptRunner(redis_url + "?db=999", "return 1")
    with pytest.raises(RespError, match="SELECT failed"):
        await bad([], [])
    bad.close()


def test_unknown_schemes_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="scheme"):
        ScriptRunner("http://127.0.0.1:6379", "return 1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real redis-server that speaks TLS only; (port, CA certificate)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    cert, key = self_signed(tmp_path, "redis")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert),
            "--tls-auth-clients", "no",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("redis-server with TLS did not start (built without TLS?)")
                time.sleep(0.05)
        yield port, cert
    finally:
        proc.terminate()
        proc.wait(10)


async def test_rediss_urls_speak_tls(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    runner = ScriptRunner(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", "return 5")
    try:
        assert await runner([], []) == 5
    finally:
        runner.close()
    # Without trusting the CA the certificate is refused: TLS is really checked.
    untrusted = ScriptRunner(f"rediss://127.0.0.1:{port}/0", "return 5")
    with pytest.raises(RespError, match="cannot reach redis"):
        await untrusted([], [])
    untrusted.close()


async def test_a_lease_costs_one_round_trip_per_block(redis_url: str) -> None:
    limiter = RateLimiter(redis_url)
    calls = 0
    script = limiter._script

    async def counted(keys: list[str], args: list[object]) -> object:
        nonlocal calls
        calls += 1
        return await script(keys, args)

    limiter._script = counted  # type: ignore[assignment]
    try:
        bucket = Bucket("lease", per_second=50, burst=100)  # blocks of 50
        assert [await limiter.take("u1", bucket) for _ in range(100)] == [0] * 100
        assert calls == 2
    finally:
        script.close()


async def test_two_gateways_share_one_limit(redis_url: str) -> None:
    """Two gateways' limiters on one Redis: a user sending through both gets the burst
    and the refill, plus at most one block per gateway (the stated tolerance), never
    twice the limit."""
    a, b = RateLimiter(redis_url), RateLimiter(redis_url)
    try:
        bucket = Bucket("two", per_second=5, burst=10)  # blocks of 5
        loop = asyncio.get_running_loop()
        start = loop.time()
        allowed = 0
        for i in range(60):
            limiter = a if i % 2 else b
            allowed += await limiter.take("u", bucket) == 0
        elapsed = loop.time() - start
        ceiling = bucket.burst + bucket.per_second * elapsed + 2 * lease_size(bucket)
        assert bucket.burst <= allowed <= ceiling, (allowed, elapsed)
        assert allowed < 60
    finally:
        a.close()
        b.close()


async def test_a_concurrent_burst_shares_one_block(redis_url: str) -> None:
    """Events of one user waiting at once take one block between them, not one each."""
    limiter = RateLimiter(redis_url)
    try:
        bucket = Bucket("burst", per_second=5, burst=10)  # blocks of 5
        waits = await asyncio.gather(*(limiter.take("u", bucket) for _ in range(10)))
        assert waits == [0] * 10
        assert await limiter.take("u", bucket) > 0
    finally:
        limiter.close()


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server with an ACL user `chat` that may touch only `rl:*` keys."""
    try:
        server = RedisServer(
            tmp_path_factory.mktemp("redis-acl"),
            ("--user", "chat", "on", f">{ACL_PASSWORD}", "~rl:*", "+@all"),
        )
    except Missing as exc:
        pytest.skip(str(exc))
    yield server.url
    server.stop()


#: Characters a URL must encode: the login is percent-encoded into the URL.
ACL_PASSWORD = "p@ss:w/rd%?"


async def test_both_clients_log_in_as_the_acl_user_from_the_same_url(acl_redis: str) -> None:
    url = with_login(acl_redis, "chat", ACL_PASSWORD)
    limiter = RateLimiter(url)
    try:
        assert await limiter.take("u1", Bucket("t", per_second=5, burst=10)) == 0
    finally:
        limiter.close()
    client = Redis.from_url(url)
    try:
        assert await client.set("rl:x", "1")
        # The ACL is what admitted them: outside `rl:*` the same user is refused.
        with pytest.raises(RedisError, match="no permissions"):
            await client.set("other", "1")
    finally:
        await client.aclose()
    wrong = ScriptRunner(with_login(acl_redis, "chat", "wrong"), "return 1")
    try:
        with pytest.raises(RespError, match="WRONGPASS"):
            await wrong([], [])
    finally:
        wrong.close()
