"""A minimal pipelined Redis client for the one command on the hot path: EVALSHA.

Every client event takes a token from Redis (rate limits). Through redis-py that cost
about 0.15 ms of gateway CPU per event, 30 % of the gateway's share of a
`message:send` (py-spy at 1,000 messages/s): connection-pool checkout, retry and
observability layers around one round trip. Here a command is a few bytes appended to
a buffer that is written once per loop turn, and replies are matched to requests in
order (RESP is FIFO on one connection). Everything else keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from redis.exceptions import RedisError

#: Default reply deadline (ms): a hung Redis must turn into retry acks, not silence.
DEFAULT_TIMEOUT_MS: Final = 2_000


class RespError(RedisError):
    """An error reply (`-ERR ...`), a lost connection or a reply that did not come in
    time (a `RedisError`, like redis-py's, so callers handle all of them the same way)."""


def redis_options(timeout_ms: int) -> dict[str, Any]:
    """redis-py keyword arguments giving every call the same deadline as ours."""
    return {"socket_timeout": timeout_ms / 1000, "socket_connect_timeout": timeout_ms / 1000}


def tls_context(url: str) -> ssl.SSLContext | None:
    """The TLS context a `rediss://` URL asks for (None for plain `redis://`).

    Understands redis-py's URL options, so one URL serves both clients:
    `ssl_cert_reqs=none|optional|required` and `ssl_ca_certs=<path>`.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif reqs in ("optional", "cert_optional"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def encode_command(*args: bytes) -> bytes:
    """One command in RESP2 array form."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def parse_reply(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """One reply starting at `pos`: (value, next position); `_Incomplete` if cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return RespError(line.decode()), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = parse_reply(buf, pos)
            items.append(item)
        return items, pos
    raise RespError(f"unexpected reply type {kind!r}")


#: Where the primary is now (`chat_runtime.redis_client.primary_locator`: asks Sentinel).
Locate = Callable[[], Awaitable[tuple[str, int]]]


class ScriptRunner(asyncio.Protocol):
    """Runs one Lua script with EVALSHA over a single pipelined connection.

    Every request has a reply deadline: requests are answered in order, so checking the
    oldest one is enough, from one timer re-armed while requests wait (no timer per
    call). When it passes, the connection is dropped and every waiting call fails with
    `RespError`; the next call reconnects.

    With `locate` (Sentinel), every (re)connect asks it for the primary's address instead
    of using the URL's (whose password, database and TLS still apply). A READONLY reply
    (a server demoted by a failover, or a managed Redis whose endpoint moved) drops the
    connection, so the next call connects again, to the new primary.
    """

    def __init__(
        self,
        url: str,
        script: str,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        locate: Locate | None = None,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
        self._url = url
        self._locate = locate
        self._tls = tls_context(url)
        self._script = script.encode()
        self._sha = hashlib.sha1(self._script).hexdigest().encode()
        self._timeout = timeout_ms / 1000
        self._transport: asyncio.Transport | None = None
        self._ready = False
        self._connecting: asyncio.Future[None] | None = None
        #: (deadline, future) per request, in the order the replies will come.
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._buf = bytearray()
        self._out: list[bytes] = []
        #: Set while a dropped connection has not reported `connection_lost` yet.
        self._gone: asyncio.Future[None] | None = None

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """The script's reply; loads the script on first use (NOSCRIPT)."""
        words = [str(len(keys)).encode(), *(k.encode() for k in keys)]
        words += [str(a).encode() for a in args]
        reply = await self._send(b"EVALSHA", self._sha, *words)
        if isinstance(reply, RespError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._send(b"EVAL", self._script, *words)
        if isinstance(reply, RespError):
            if str(reply).startswith("READONLY"):
                await self._drop()
            raise reply
        return reply

    async def _drop(self) -> None:
        """Close the connection and wait until it is gone, so that the next call makes
        a new one (whose `connection_made` the old one's `connection_lost` cannot undo)."""
        transport = self._transport
        if transport is None:
            return
        self._ready = False
        self._gone = asyncio.get_running_loop().create_future()
        transport.abort()
        await self._gone

    async def _send(self, *command: bytes) -> Any:
        if not self._ready:
            try:
                await self._connect()
            except RespError:
                raise  # AUTH or SELECT refused, as the server said it
            except (OSError, TimeoutError, RedisError) as exc:  # RedisError: no primary known
                raise RespError(f"cannot reach redis: {exc!r}") from exc
        return await self._request(*command)

    def _request(self, *command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((loop.time() + self._timeout, future))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._check_deadline)
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(encode_command(*command))
        return future

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0][0]
        if deadline > loop.time():
            self._watchdog = loop.call_at(deadline, self._check_deadline)
            return
        self._fail(RespError(f"redis did not answer within {self._timeout * 1000:.0f} ms"))
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: RespError) -> None:
        self._ready = False
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            await connecting
        finally:
            if self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        url = urlsplit(self._url)
        async with asyncio.timeout(self._timeout):
            if url.scheme == "unix" and self._locate is None:
                await loop.create_unix_connection(lambda: self, url.path)
            else:
                host, port = url.hostname or "127.0.0.1", url.port or 6379
                if self._locate is not None:
                    host, port = await self._locate()
                await loop.create_connection(
                    lambda: self,
                    host,
                    port,
                    ssl=self._tls,
                    server_hostname=host if self._tls is not None else None,
                )
        db = url.path.strip("/") if url.scheme != "unix" else ""
        if url.scheme == "unix":
            db = parse_qs(url.query).get("db", [""])[-1]
        try:
            if url.password:
                # Percent-encoded in the URL (redis-py decodes them the same way).
                auth = [unquote(url.username).encode()] if url.username else []
                await self._checked(b"AUTH", *auth, unquote(url.password).encode())
            if db and db != "0":
                await self._checked(b"SELECT", db.encode())
        except BaseException:
            if self._transport is not None:
                self._transport.abort()
            raise
        self._ready = True

    async def _checked(self, *command: bytes) -> None:
        """A set-up command whose error reply must stop the connection (AUTH, SELECT)."""
        reply = await self._request(*command)
        if isinstance(reply, RespError):
            raise RespError(f"redis {command[0].decode()} failed: {reply}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        pos = 0
        while pos < len(self._buf):
            try:
                value, pos_next = parse_reply(self._buf, pos)
            except _Incomplete:
                break
            pos = pos_next
            if self._waiting:
                _, future = self._waiting.popleft()
                if not future.done():
                    future.set_result(value)
        del self._buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._buf.clear()
        self._fail(RespError(f"redis connection lost: {exc}"))
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def close(self) -> None:
        """Close the connection."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            self._transport.close()
