"""The NATS bus: one connection per process, request/reply with retry acks, fan-out.

Everything that crosses NATS is msgpack; decoders and encoders are built once per type
(msgspec's advice: a cached `Decoder` is several times faster than `msgspec.msgpack.decode`
with a `type=` argument on every call).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from chat_contracts import DomainError, ErrorCode, RetryableError, subjects
from chat_contracts.bus import (
    Actor,
    BatchItem,
    Command,
    CommandBatch,
    Fanout,
    Frame,
    Reply,
    ReplyBatch,
    RoomsJoined,
)
from chat_contracts.ids import check_id
from chat_runtime import trace
from chat_runtime.joins import RecentJoins
from chat_runtime.metrics import NATS_REQUEST_FAILURES

log = logging.getLogger(__name__)

_msgpack = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_joins_decoder = msgspec.msgpack.Decoder(RoomsJoined)
_reply_batch_decoder = msgspec.msgpack.Decoder(ReplyBatch)
#: One result decoder per type, built on first use (see the module docstring).
_result_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

T = TypeVar("T")

#: How long a client waits for a worker pool before it is told to retry (ms).
DEFAULT_REQUEST_TIMEOUT_MS = 5_000
#: Draining the connection at exit (s): what is unsent by then is fan-out that `sync`
#: repairs; nats.py's own drain timeout (30 s) outlives a 10 s or 30 s grace period.
CLOSE_S = 1.5
#: What a client is told to wait before retrying when no worker answered (ms).
UNAVAILABLE_RETRY_AFTER_MS = 1_000


def encode(value: Any) -> bytes:
    """msgpack, with the shared encoder."""
    return _msgpack.encode(value)


def encode_json(value: Any) -> bytes:
    """JSON for clients, with the shared encoder."""
    return _json.encode(value)


def unavailable(retry_after_ms: int = UNAVAILABLE_RETRY_AFTER_MS) -> Reply:
    """The reply a caller gets when no worker answered in time."""
    return Reply(
        status="retry",
        code=ErrorCode.UNAVAILABLE.value,
        error="service unavailable, retry later",
        retry_after=retry_after_ms,
    )


#: nats-py's reconnect settings for every process. A node that dies closes its sockets
#: and the client moves to the next server at once; one that hangs silently (a host
#: lost, a partition) is noticed after `max_outstanding_pings` unanswered pings of
#: `ping_interval` s, 20-30 s, instead of nats-py's default 120 s x 2. Reconnecting
#: never gives up; a server tried less than `reconnect_time_wait` s ago is skipped
#: for one that was not. Publishes made while disconnected wait in nats-py's buffer
#: (2 MiB) and go out after the reconnect.
RECONNECT: dict[str, Any] = {
    "max_reconnect_attempts": -1,
    "reconnect_time_wait": 0.5,
    "ping_interval": 10,
    "max_outstanding_pings": 2,
    "connect_timeout": 2,
}


def servers(url: str) -> list[str]:
    """The server URLs of a comma-separated `CHAT_NATS_URL`."""
    found = [part.strip() for part in url.split(",") if part.strip()]
    if not found:
        raise ValueError("no NATS server URL given")
    return found


class QueryError(Exception):
    """A service answered `ok` with a result that is not the agreed type (a contract bug
    between two services, not the client's fault)."""


def result_decoder(result_type: type[T]) -> msgspec.msgpack.Decoder[T]:
    """The cached msgpack decoder of `result_type`."""
    decoder = _result_decoders.get(result_type)
    if decoder is None:
        decoder = _result_decoders[result_type] = msgspec.msgpack.Decoder(result_type)
    return decoder


def _code(code: str | None, default: ErrorCode) -> ErrorCode:
    try:
        return ErrorCode(code) if code else default
    except ValueError:
        return default


def reply_result(reply: Reply, result_type: type[T]) -> T:
    """The result of a reply as `result_type`; a refusal raises as the service gave it.

    `retry` → `RetryableError`, `error` → `DomainError` (same code and field), `ok`
    without a readable result → `QueryError`.
    """
    if reply.status == "retry":
        raise RetryableError(
            _code(reply.code, ErrorCode.UNAVAILABLE),
            reply.error or "service unavailable",
            retry_after_ms=reply.retry_after or UNAVAILABLE_RETRY_AFTER_MS,
        )
    if reply.status == "error":
        raise DomainError(
            _code(reply.code, ErrorCode.INTERNAL), reply.error or "refused", field=reply.field
        )
    if reply.result is None:
        raise QueryError(f"ok without a result (expected {result_type.__name__})")
    try:
        return result_decoder(result_type).decode(reply.result)
    except msgspec.DecodeError as exc:
        # Not a ValidationError: a worker's Router would blame the client's payload.
        raise QueryError(f"unreadable {result_type.__name__}: {exc}") from None


class Bus:
    """A NATS connection with the project's conventions."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        #: Recent room joins: this process's own, and every worker's once `track_joins`.
        self.joins = RecentJoins()
        #: Where this process tells the others of its joins (set by `track_joins`).
        self.joins_subject: str | None = None

    @classmethod
    async def connect(cls, url: str, name: str, *, randomize: bool = True, **options: Any) -> Bus:
        """Connect, retrying forever on reconnect (a NATS restart is survivable).

        `url` may list several servers of one cluster, comma-separated: the client
        connects to one (a random one unless `randomize` is False: then in the listed
        order) and, when that node goes away, moves to the next one it can reach,
        including nodes the cluster told it about since (see `RECONNECT`).
        """

        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)

        async def on_disconnect() -> None:
            log.warning("nats: disconnected")

        async def on_reconnect() -> None:
            log.info("nats: reconnected")

        nc = await nats.connect(
            servers(url),
            name=name,
            dont_randomize=not randomize,
            **RECONNECT,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            **options,
        )
        return cls(nc)

    @property
    def max_payload(self) -> int:
        """The largest message the server accepts (bytes; 1 MiB by default)."""
        return int(self.nc.max_payload)

    @property
    def connected(self) -> bool:
        """True while the connection is up."""
        return bool(self.nc.is_connected)

    async def request(
        self,
        subject: str,
        payload: bytes,
        timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
    ) -> Reply:
        """Request/reply; no responders or a timeout become an UNAVAILABLE retry reply."""
        try:
            msg = await self.nc.request(
                subject, payload, timeout=timeout_ms / 1000, headers=trace.outgoing()
            )
        except NoRespondersError:
            NATS_REQUEST_FAILURES.labels(subject, "no_responders").inc()
            return unavailable()
        except NatsTimeoutError:
            NATS_REQUEST_FAILURES.labels(subject, "timeout").inc()
            return unavailable()
        return _reply_decoder.decode(msg.data)

    async def command(
        self,
        domain: str,
        action: str,
        actor: Actor,
        payload: Any,
        *,
        origin_sid: str | None = None,
        timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
    ) -> Reply:
        """Send `cmd.<domain>.<action>` with the actor and a payload Struct."""
        body = encode(Command(actor=actor, payload=payload, origin_sid=origin_sid))
        return await self.request(subjects.command(domain, action), body, timeout_ms)

    async def command_batch(
        self, domain: str, items: list[BatchItem], timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    ) -> list[Reply]:
        """Send several commands of `domain` as one `cmd.<domain>.batch` request; one reply
        per item, in order (UNAVAILABLE for all when no worker answered in time)."""
        body = encode(CommandBatch(items=items))
        try:
            msg = await self.nc.request(
                subjects.command_batch(domain), body, timeout=timeout_ms / 1000
            )
        except (NoRespondersError, NatsTimeoutError):
            return [unavailable()] * len(items)
        try:
            replies = _reply_batch_decoder.decode(msg.data).replies
        except msgspec.DecodeError:
            replies = []
        if len(replies) != len(items):
            log.error("batch of %d %s commands got %d replies", len(items), domain, len(replies))
            lost = Reply(status="error", code=ErrorCode.INTERNAL.value, error="internal error")
            replies = replies[: len(items)] + [lost] * (len(items) - len(replies))
        return replies

    async def query(
        self,
        subject: str,
        payload: Any,
        result_type: type[T],
        *,
        actor: Actor,
        timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
    ) -> T:
        """An internal request (`cmd.groups.membership`...) and its typed result.

        Raises `RetryableError` when nobody answered in time or the service said retry,
        `DomainError` when it refused, `QueryError` when its result is unreadable.
        """
        body = encode(Command(actor=actor, payload=payload))
        return reply_result(await self.request(subject, body, timeout_ms), result_type)

    async def publish(self, subject: str, data: bytes) -> None:
        """Fire and forget (fan-out is at-most-once; `sync` repairs gaps).

        The current trace (trace.py) rides along as a `traceparent` header.
        """
        await self.nc.publish(subject, data, headers=trace.outgoing())

    async def subscribe(
        self,
        subject: str,
        callback: Callable[[Msg], Awaitable[None]],
        queue: str = "",
    ) -> Subscription:
        """A callback subscription (several times faster than `async for` in nats-py)."""
        return await self.nc.subscribe(subject, queue=queue, cb=callback)

    async def track_joins(self, domain: str) -> None:
        """Hear every worker's room joins (`subjects.ROOMS_JOINED_ANY`) into `joins`, so
        that this process's `Publisher` copies room events to new members; and tell
        the others of this one's joins on `evt.<domain>.joins`."""
        self.joins_subject = subjects.rooms_joined(domain)

        async def on_joins(msg: Msg) -> None:
            try:
                change = _joins_decoder.decode(msg.data)
            except msgspec.DecodeError:
                log.warning("undecodable %s", msg.subject)
                return
            if change.left:
                self.joins.left(change.users, change.rooms)
            else:
                self.joins.joined(change.users, change.rooms)

        await self.subscribe(subjects.ROOMS_JOINED_ANY, on_joins)

    async def flush(self) -> None:
        """Wait until the server has processed everything sent so far (subscriptions
        included: another connection's publish after this returns reaches them).

        nats-py's own `flush()` is not enough: it writes its PING straight to the socket,
        while the SUB/PUB commands sent before it still wait in the client's pending
        buffer for the flusher task, so its PONG can come back before the server has
        read them. Seen as CI's `test_joins` failure: under CPU load, ~1 run in 20, a
        subscription made before `flush()` missed a message another connection published
        right after. So the buffer is written out first (nats-py's private
        `_flush_pending(force_flush=True)` waits for the flusher to have written it;
        libs/runtime/pyproject.toml pins nats-py to the range tests/test_bus.py checks),
        then the PING goes out behind it.
        """
        await self.nc._flush_pending(force_flush=True)
        await self.nc.flush()

    async def close(self, timeout_s: float = CLOSE_S) -> None:
        """Drain subscriptions and pending publishes, then close; past `timeout_s`,
        close without waiting further."""
        if self.nc.is_closed:
            return
        try:
            await asyncio.wait_for(self.nc.drain(), timeout_s)
        except TimeoutError:
            log.warning("nats: not drained within %.1f s; closing", timeout_s)
            await self.nc.close()


class Publisher:
    """Fan-out towards gateways. Only handlers publish, and only after the write is durable.

    The client payload is JSON-encoded once here; every gateway and socket gets those bytes.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def to_room(
        self,
        room_id: str,
        event: str,
        payload: msgspec.Struct,
        *,
        skip_sid: str | None = None,
        skip_user: str | None = None,
        close_room: bool = False,
        seq: int | None = None,
    ) -> None:
        """Emit `event` to every local member socket of `room_id` on every gateway
        (`seq`: the chat seq of a `message:new`, which gateways deliver in seq order)."""
        fanout = Fanout(
            event=event,
            data=encode_json(payload),
            skip_sid=skip_sid,
            skip_user=skip_user,
            close_room=close_room,
            seq=seq,
        )
        new = [user for user in self._bus.joins.of(room_id) if user != skip_user]
        if new:
            fanout.once_id = uuid.uuid4().hex
        await self._bus.publish(subjects.room(room_id), encode(fanout))
        if new:
            # The room's newest members may not be subscribed on this node yet (see
            # chat_runtime.joins): the same event on their own subjects, once per socket.
            fanout.room_copy = room_id
            if len(new) == 1:
                await self._bus.publish(subjects.user(new[0]), encode(fanout))
            else:
                fanout.users = new
                await self._bus.publish(subjects.USERS_FANOUT, encode(fanout))

    async def to_user(
        self,
        user_id: str,
        event: str,
        payload: msgspec.Struct,
        *,
        skip_sid: str | None = None,
        join: list[str] | None = None,
        leave: list[str] | None = None,
    ) -> None:
        """Emit `event` to every socket of `user_id` on every gateway.

        With `join`/`leave`, those sockets first enter or leave the rooms (the user's own
        membership change and the event announcing it travel together; see `Fanout`).
        """
        fanout = Fanout(
            event=event,
            data=encode_json(payload),
            skip_sid=skip_sid,
            join=join or [],
            leave=leave or [],
        )
        await self._rooms_changed([user_id], join, leave)
        await self._bus.publish(subjects.user(user_id), encode(fanout))

    async def to_users(
        self,
        user_ids: list[str],
        events: list[tuple[str, msgspec.Struct]],
        *,
        join: list[str] | None = None,
    ) -> None:
        """The same events (and room joins) to several users: one message on `rt.users`.

        One delivery per user would put every event on NATS once per user: a 1,024-member
        `group:create` (1,024 `group:member:added` to each member) was 1,024 messages of
        377 KB, 386 MB with 128-character ids. Here the events and the list of users
        travel once (510 KB) and each gateway hands them to its local sockets of those
        users. A list too long for the server's `max_payload` is split in halves, each
        carrying all the events.
        """
        if not events or not user_ids:
            return
        for user_id in user_ids:
            check_id(user_id, "user id")
        await self._rooms_changed(user_ids, join, None)
        frames = [Frame(event, encode_json(payload)) for event, payload in events]
        first, more = frames[0], frames[1:]
        limit = self._bus.max_payload
        pending = [user_ids]
        while pending:
            users = pending.pop()
            body = encode(
                Fanout(event=first.event, data=first.data, more=more, join=join or [], users=users)
            )
            if len(body) > limit and len(users) > 1:
                half = len(users) // 2
                pending += [users[half:], users[:half]]
                continue
            await self._bus.publish(subjects.USERS_FANOUT, body)

    async def event(self, subject: str, payload: msgspec.Struct) -> None:
        """A domain event for other services (`evt.<domain>.<name>`, msgpack)."""
        await self._bus.publish(subject, encode(payload))

    async def to_socket(self, user_id: str, sid: str, event: str, payload: msgspec.Struct) -> None:
        """Emit `event` to one socket of `user_id` (wherever it is connected)."""
        fanout = Fanout(event=event, data=encode_json(payload), to_sid=sid)
        await self._bus.publish(subjects.user(user_id), encode(fanout))

    async def membership(
        self, user_id: str, *, join: list[str] | None = None, leave: list[str] | None = None
    ) -> None:
        """Tell the gateways holding `user_id`'s sockets to enter or leave rooms now."""
        fanout = Fanout(join=join or [], leave=leave or [])
        await self._rooms_changed([user_id], join, leave)
        await self._bus.publish(subjects.user(user_id), encode(fanout))

    async def _rooms_changed(
        self, users: list[str], join: list[str] | None, leave: list[str] | None
    ) -> None:
        """Record joins and leaves here and tell every worker (`Bus.track_joins`),
        before the gateways hear of them."""
        told = self._bus.joins_subject
        if join:
            self._bus.joins.joined(users, join)
            if told is not None:
                await self._bus.publish(told, encode(RoomsJoined(users=users, rooms=join)))
        if leave:
            self._bus.joins.left(users, leave)
            if told is not None:
                change = RoomsJoined(users=users, rooms=leave, left=True)
                await self._bus.publish(told, encode(change))
