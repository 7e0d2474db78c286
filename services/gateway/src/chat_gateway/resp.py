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
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError


class RespError(RedisError):
    """An error reply (`-ERR ...`) or a lost connection (a `RedisError`, like redis-py's,
    so callers handle both the same way)."""


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


class ScriptRunner(asyncio.Protocol):
    """Runs one Lua script with EVALSHA over a single pipelined connection."""

    def __init__(self, url: str, script: str) -> None:
        self._url = url
        self._script = script.encode()
        self._sha = hashlib.sha1(self._script).hexdigest().encode()
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._buf = bytearray()
        self._out: list[bytes] = []

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """The script's reply; loads the script on first use (NOSCRIPT)."""
        words = [str(len(keys)).encode(), *(k.encode() for k in keys)]
        words += [str(a).encode() for a in args]
        reply = await self._send(b"EVALSHA", self._sha, *words)
        if isinstance(reply, RespError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._send(b"EVAL", self._script, *words)
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def _send(self, *command: bytes) -> Any:
        if self._transport is None or self._transport.is_closing():
            try:
                await self._connect()
            except OSError as exc:
                raise RespError(f"cannot reach redis: {exc}") from exc
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(encode_command(*command))
        return await future

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
        if url.scheme == "unix":
            await loop.create_unix_connection(lambda: self, url.path)
        else:
            host, port = url.hostname or "127.0.0.1", url.port or 6379
            await loop.create_connection(lambda: self, host, port)
        db = url.path.strip("/") if url.scheme != "unix" else ""
        if url.password:
            auth = [url.username.encode()] if url.username else []
            await self._send(b"AUTH", *auth, url.password.encode())
        if db and db != "0":
            await self._send(b"SELECT", db.encode())

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
                future = self._waiting.popleft()
                if not future.done():
                    future.set_result(value)
        del self._buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._buf.clear()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(RespError(f"redis connection lost: {exc}"))

    def close(self) -> None:
        """Close the connection."""
        if self._transport is not None:
            self._transport.close()
