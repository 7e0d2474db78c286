"""One way to reach Redis for every process: a URL, or a Sentinel-watched primary.

`CHAT_REDIS_URL` alone: that server. With `CHAT_REDIS_SENTINELS` (comma-separated
`host:port` of the sentinels): the current primary of `CHAT_REDIS_SENTINEL_MASTER`, found
by asking the sentinels (`SENTINEL get-master-addr-by-name`) whenever a connection is
made, so that after a failover new connections go to the promoted replica. The URL then
only lends its options (password, database, `rediss://` TLS) to the primary's
connections. redis-py's Sentinel pool also drops a connection that meets a demoted
primary (a READONLY reply) and reconnects through the sentinels.

Errors while Redis is away (connection refused or reset, no primary yet, a reply deadline
passed) are `TRANSIENT`: the caller answers `retry`, never crashes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat_contracts import ErrorCode, RetryableError
from chat_runtime.settings import DEFAULT_SENTINEL_MASTER as DEFAULT_MASTER
from chat_runtime.settings import RedisSettings, sentinel_address

__all__ = [
    "DEFAULT_MASTER",
    "RedisSettings",
    "connect_redis",
    "primary_locator",
    "redis_unavailable",
]

#: Deadline of one question to one sentinel (s): a dead sentinel costs this, then the
#: next one is asked.
SENTINEL_TIMEOUT_S: Final = 0.5
#: What a client is told to wait before retrying while Redis is away (a failover takes
#: 1-2 s after Sentinel's `down-after-milliseconds`).
RETRY_AFTER_MS: Final = 1_000
#: Connect and reply deadline of every Redis call unless the caller gives its own (s):
#: without one, a call to a server that vanished mid-failover may wait for ever.
DEFAULT_TIMEOUT_S: Final = 2.0

#: Redis errors that mean "not reachable right now" rather than a bug: retry later.
#: (`MasterNotFoundError` and redis-py's Sentinel "previous master is now a slave" are
#: `ConnectionError`s.)
#: redis-py wraps socket errors in its `ConnectionError`.
TRANSIENT: Final = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


def redis_unavailable(exc: BaseException) -> RetryableError | None:
    """The `retry`/UNAVAILABLE refusal for Redis being away (`TRANSIENT`), else None."""
    if not isinstance(exc, TRANSIENT):
        return None
    return RetryableError(
        ErrorCode.UNAVAILABLE,
        f"redis is unavailable ({type(exc).__name__}); try again",
        retry_after_ms=RETRY_AFTER_MS,
    )


def url_options(url: str) -> dict[str, Any]:
    """The connection options a Redis URL carries (password, database, TLS), for the
    primary's connections when the address comes from the sentinels."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    # Percent-encoded in the URL (`with_login` encodes; redis-py's from_url decodes).
    if parts.password:
        options["password"] = unquote(parts.password)
    if parts.username:
        options["username"] = unquote(parts.username)
    db = parts.path.strip("/") if parts.scheme != "unix" else ""
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    db = query.get("db", db)
    if db:
        options["db"] = int(db)
    if parts.scheme == "rediss":
        options["ssl"] = True
        if "ssl_cert_reqs" in query:
            options["ssl_cert_reqs"] = query["ssl_cert_reqs"]
        if "ssl_ca_certs" in query:
            options["ssl_ca_certs"] = query["ssl_ca_certs"]
    return options


def sentinel_of(settings: RedisSettings) -> Sentinel | None:
    """The Sentinel client of these settings (None without sentinels)."""
    if not settings.redis_sentinels:
        return None
    return Sentinel(  # type: ignore[no-untyped-call]
        [sentinel_address(a) for a in settings.redis_sentinels],
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "driver_info": None,  # as `connect_redis`'s connections
        },
    )


def connect_redis(settings: RedisSettings, **options: Any) -> Redis:
    """A redis-py client: the URL's server, or the sentinels' current primary.

    `options` (timeouts...) go to every connection to the server or primary; without
    timeouts, every call gets `DEFAULT_TIMEOUT_S` to connect and to be answered.
    Connections do not send `CLIENT SETINFO` (`driver_info=None`): Redis before 7.2
    refuses it, and each refusal redis-py swallows leaves a reference cycle (the
    exception, its traceback, frames and a timeout: ~12 objects, two refusals per new
    connection) for a collector whose oldest generation almost never runs in our tuned
    processes; the soak's garbage check counts them.
    """
    options = {
        "socket_timeout": DEFAULT_TIMEOUT_S,
        "socket_connect_timeout": DEFAULT_TIMEOUT_S,
        "driver_info": None,
        **options,
    }
    sentinel = sentinel_of(settings)
    if sentinel is None:
        return Redis.from_url(settings.redis_address, **options)
    # Options given here win over the URL's (an ACL login from its own settings).
    client: Redis = sentinel.master_for(
        settings.redis_sentinel_master, **{**url_options(settings.redis_address), **options}
    )
    return client


def primary_locator(
    settings: RedisSettings,
) -> Callable[[], Awaitable[tuple[str, int]]] | None:
    """For a client that connects by itself (the gateway's pipelined `resp.py`): an
    async function giving the primary's address now, or None without sentinels."""
    sentinel = sentinel_of(settings)
    if sentinel is None:
        return None
    master = settings.redis_sentinel_master

    async def locate() -> tuple[str, int]:
        # MasterNotFoundError (a ConnectionError) while no sentinel names a live one.
        host, port = await sentinel.discover_master(master)
        return str(host), int(port)

    return locate
