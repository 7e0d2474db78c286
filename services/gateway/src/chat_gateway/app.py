"""The gateway: Socket.IO in front, NATS behind, Redis for presence and rate limits.

Per client event: validate the payload against its contract (msgspec) → rate-limit →
either forward it as `cmd.<domain>.<action>` and turn the reply into the ack, or handle
it here (typing, presence). Per fan-out: see `fanout.Delivery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import socketio
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_contracts import DomainError, ErrorCode, RetryableError, ids, limits, subjects
from chat_contracts import client as c
from chat_contracts import server as s
from chat_contracts.bus import (
    Actor,
    ChatIds,
    Command,
    Empty,
    Fanout,
    Members,
    Membership,
    MembershipQuery,
    MembersQuery,
    PresenceChanged,
)
from chat_contracts.routes import BY_EVENT, GATEWAY, ROUTES, Route, unserved
from chat_gateway import acks, jsonmod
from chat_gateway.auth import TokenVerifier, Unauthorized
from chat_gateway.conn import Connection, OutFrame, SioConnection
from chat_gateway.fanout import Delivery
from chat_gateway.lean import Refused
from chat_gateway.policy import HandshakeLimiter, TransportPolicy
from chat_gateway.presence import Presence
from chat_gateway.ratelimit import Bucket, RateLimiter, buckets_by_event
from chat_gateway.registry import LocalSocket, Registry
from chat_gateway.sessions import Sessions, sweep_forever
from chat_gateway.settings import GatewaySettings
from chat_gateway.typing_relay import TypingRelay
from chat_runtime.bus import Bus, QueryError, encode, encode_json
from chat_runtime.clock import Clock, SystemClock, iso
from chat_runtime.redis_client import primary_locator

log = logging.getLogger(__name__)

LocalHandler = Callable[[LocalSocket, Any], Awaitable[acks.Ack]]

_GROUPS_MINE = subjects.command(subjects.GROUPS, "mine")
_MESSAGES_MINE = subjects.command(subjects.MESSAGES, "mine")
_MEMBERSHIP = subjects.command(subjects.GROUPS, "membership")
_MEMBERS = subjects.command(subjects.GROUPS, "members")

#: How long a group's member count is trusted for the typing size rule (s).
MEMBER_COUNT_TTL_S = 30.0


class Gateway:
    """One gateway process: the Socket.IO server and its wiring."""

    def __init__(
        self,
        settings: GatewaySettings,
        bus: Bus,
        redis: Redis,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.redis = redis
        self.clock = clock or SystemClock()
        self.verifier = TokenVerifier(settings)
        self.registry = Registry()
        #: Origins, payload limit and heartbeat for both transports (see policy.py).
        self.policy = TransportPolicy.from_settings(settings)
        self.handshakes = HandshakeLimiter(
            settings.handshakes_per_address_per_s, settings.handshake_burst
        )
        # python-socketio serves long-polling (and polling→WebSocket upgrades); direct
        # WebSocket clients are served by `lean.LeanServer`. Both call connect/event/
        # disconnect below.
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            # Events of a session run in arrival order, one at a time (a POST or a
            # WebSocket read waits for them: back-pressure), like the lean path.
            async_handlers=False,
            json=jsonmod,
            logger=False,
            engineio_logger=False,
            **self.policy.engineio_options(),
        )
        # Socket.IO packets decode leniently (bad JSON becomes an event the catch-all
        # acks); Engine.IO keeps the strict module. The constructor set both to jsonmod.
        self.sio.packet_class.json = jsonmod.Lenient
        self.sessions = Sessions(
            self.registry, self.sio.eio, settings.connect_timeout_ms, self._spawn
        )
        self.delivery = Delivery(bus, self.registry)
        self.presence = Presence(
            redis, settings.node_id, settings.presence_lease_ms, settings.presence_grace_ms
        )
        # Behind Sentinel, the limiter's own connection finds the primary the same way.
        self.limiter = RateLimiter(
            settings.redis_url, settings.redis_timeout_ms, primary_locator(settings)
        )
        self.typing = TypingRelay(redis, settings.typing_expiry_ms, self._typing_expired)
        self._bucket_of = buckets_by_event(settings)
        #: One JSON decoder per event, built once (msgspec: reuse decoders).
        self._decoders = {route.event: msgspec.json.Decoder(route.payload) for route in ROUTES}
        #: Answered NOT_IMPLEMENTED at once (no handler yet, or a service left out).
        self._unserved = unserved(settings.optional_services)
        self._member_counts: dict[str, tuple[float, int]] = {}
        self._grace: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._local: dict[str, LocalHandler] = {
            "typing_start": self._typing_start,
            "typing_stop": self._typing_stop,
            "presence_set": self._presence_set,
            "presence_query": self._presence_query,
            "presence_subscribe": self._presence_subscribe,
        }
        self.sio.on("connect", self._sio_connect)
        self.sio.on("disconnect", self._sio_disconnect)
        self.sio.on("*", self._sio_event)

    # --- HTTP ------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        """The aiohttp application: Socket.IO at /socket.io/, plus health endpoints."""
        app = web.Application()
        self.sio.attach(app)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self.settings.debug_endpoints:
            app.router.add_post("/debug/gc", self._debug_gc)
        return app

    async def _debug_gc(self, _request: web.Request) -> web.Response:
        collected = gc.collect()
        return web.json_response({"collected": collected, "sockets": len(self.registry.sockets)})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        redis_ok = False
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            redis_ok = bool(await asyncio.wait_for(self.redis.ping(), timeout=1))
        ready = self.bus.connected and redis_ok
        body = {"nats": self.bus.connected, "redis": redis_ok}
        return web.json_response(body, status=200 if ready else 503)

    # --- lifecycle ---------------------------------------------------------------------

    async def start_background(self) -> None:
        """Start the fan-out inbox and the presence lease refresher."""
        await self.delivery.start()
        self._spawn(self._refresh_leases())
        self._spawn(
            sweep_forever(
                self.sessions, lambda: self.clock.now().timestamp(), self.handshakes.prune
            )
        )

    async def close(self) -> None:
        """Stop timers and subscriptions."""
        self.typing.close()
        self.limiter.close()
        for task in [*self._grace.values(), *self._background]:
            task.cancel()
        await self.delivery.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh_leases(self) -> None:
        period = self.settings.presence_lease_ms / 3000
        while True:
            await asyncio.sleep(period)
            try:
                await self.presence.refresh(list(self.registry.by_user), _now_ms())
            except RedisError as exc:
                log.warning("presence lease refresh failed: %s", exc)

    # --- connect / disconnect -----------------------------------------------------------

    async def _sio_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        # A second CONNECT on a session is refused by python-socketio itself ("Unable
        # to connect", test_edge.py checks it); the lean path refuses it in lean.py.
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        request = environ.get("aiohttp.request")
        remote = str(getattr(request, "remote", "") or "")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        peer = sys.intern(self.policy.client_address(remote, forwarded))
        conn = SioConnection(sid, eio_sid, self.sio.eio, self.policy, peer)
        try:
            await self.connect(conn, auth)
        except Refused as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.data) from None
        session = self.sio.eio.sockets.get(eio_sid)
        if session is None or session.closed:
            # The session ended while we authenticated: python-socketio will not call
            # disconnect for a socket it never saw connected, so undo it here.
            await self.disconnect(sid)
            raise socketio.exceptions.ConnectionRefusedError(
                "gone", {"code": ErrorCode.UNAVAILABLE.value}
            )
        self.sessions.session_authenticated(eio_sid)

    async def _sio_disconnect(self, sid: str, _reason: Any = None) -> None:
        sock = self.registry.sockets.get(sid)
        if sock is not None and isinstance(sock.conn, SioConnection):
            self.sessions.session_left(sock.conn.eio_sid)
        await self.disconnect(sid)

    async def _sio_event(self, event: str, sid: str, *args: Any) -> acks.Ack | None:
        if event == jsonmod.MALFORMED:
            sock = self.registry.sockets.get(sid)
            if sock is not None:
                sock.conn.strike()
            return acks.error(ErrorCode.VALIDATION_ERROR, "malformed event packet")
        return await self.event(sid, event, args[0] if args else None)

    async def connect(self, conn: Connection, auth: Any) -> None:
        """Authenticate a new socket, put it in its user's rooms, announce presence.

        Raises `Refused` (the client's `connect_error`) for a bad token, too many
        handshakes from the address or sockets of the user, or when the services that
        list the user's chats do not answer. Any other failure is refused as INTERNAL
        (logged once with the socket id), never left unanswered.
        """
        try:
            await self._connect(conn, auth)
        except Refused:
            raise
        except Exception:
            log.exception("handshake of %s failed", conn.sid)
            await self._forget(conn.sid)
            raise Refused("internal error", {"code": ErrorCode.INTERNAL.value}) from None

    async def _connect(self, conn: Connection, auth: Any) -> None:
        wait_ms = self.handshakes.wait_ms(conn.peer)
        if wait_ms:
            log.info("handshake refused: too many from %s", conn.peer)
            raise Refused(
                "rate limited", {"code": ErrorCode.RATE_LIMITED.value, "retryAfter": wait_ms}
            )
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            session = self.verifier.session(token)
        except Unauthorized as exc:
            log.info("handshake refused: %s", exc)
            raise Refused("unauthorized", {"code": ErrorCode.UNAUTHORIZED.value}) from None
        actor = session.actor
        if len(self.registry.by_user.get(actor.user_id, ())) >= self.settings.max_sockets_per_user:
            log.info("handshake refused: %s holds too many sockets", actor.user_id)
            raise Refused("too many connections", {"code": ErrorCode.LIMIT_EXCEEDED.value})
        await self.delivery.apply(self.registry.add_socket(conn, actor))
        self.sessions.connected(conn.sid, session.expires_at)
        try:
            rooms = await self._chats_of(actor)
            await self.delivery.apply(self.registry.join_user(actor.user_id, rooms))
            first_here = len(self.registry.by_user[actor.user_id]) == 1
            if first_here and await self.presence.connected(actor.user_id):
                await self._announce(actor, await self.presence.manual_status(actor.user_id))
        except (_Unavailable, RedisError) as exc:
            log.warning("connect of %s failed: %s", actor.user_id, exc)
            await self._forget(conn.sid)
            raise Refused(
                "unavailable", {"code": ErrorCode.UNAVAILABLE.value, "retryAfter": 1000}
            ) from None

    async def _chats_of(self, actor: Actor) -> list[str]:
        """Every chat (groups and DMs) of the user: the rooms its sockets join."""
        try:
            groups, dms = await asyncio.gather(
                self.bus.query(_GROUPS_MINE, Empty(), ChatIds, actor=actor),
                self.bus.query(_MESSAGES_MINE, Empty(), ChatIds, actor=actor),
            )
        except (DomainError, RetryableError, QueryError) as exc:
            raise _Unavailable(f"chat list unavailable: {exc}") from None
        return groups.chat_ids + dms.chat_ids

    async def disconnect(self, sid: str) -> None:
        """A socket left: rooms, typing and presence follow (offline after the grace)."""
        known = self.registry.sockets.get(sid)
        if known is None:
            return
        # The user's rooms as they were: the offline announcement goes to them.
        rooms = self.registry.rooms_of(known.actor.user_id)
        sock = await self._forget(sid)
        if sock is None:
            return
        user_id = sock.actor.user_id
        if user_id in self.registry.by_user:
            return
        for chat in self.typing.active(user_id):
            await self._typing_expired(sock.actor, chat)
        try:
            token = await self.presence.disconnected(user_id)
        except RedisError as exc:
            log.warning("presence disconnect of %s failed: %s", user_id, exc)
            return
        if token is not None:
            old = self._grace.pop(user_id, None)
            if old is not None:
                old.cancel()
            self._grace[user_id] = asyncio.ensure_future(
                self._offline_after_grace(sock.actor, token, rooms)
            )

    async def _forget(self, sid: str) -> LocalSocket | None:
        sock, interest = self.registry.remove_socket(sid)
        await self.delivery.apply(interest)
        return sock

    async def _offline_after_grace(self, actor: Actor, token: str, rooms: set[str]) -> None:
        try:
            await asyncio.sleep(self.settings.presence_grace_ms / 1000)
            if await self.presence.grace_ended(actor.user_id, token):
                await self._announce(actor, "offline", rooms)
        except RedisError as exc:
            log.warning("presence expiry of %s failed: %s", actor.user_id, exc)
        finally:
            if self._grace.get(actor.user_id) is asyncio.current_task():
                del self._grace[actor.user_id]

    async def _announce(self, actor: Actor, status: str, rooms: set[str] | None = None) -> None:
        """`presence:update` to the user's contacts: every member of every chat it is in."""
        now = iso(self.clock.now())
        update = s.PresenceUpdate(
            user_id=actor.user_id,
            status=status,  # type: ignore[arg-type]
            last_seen_at=now if status == "offline" else None,
        )
        rooms = rooms if rooms is not None else self.registry.rooms_of(actor.user_id)
        if rooms:
            # Published on every room, emitted once per socket (see Fanout.dedupe_id).
            body = encode(
                Fanout(
                    event="presence:update",
                    data=encode_json(update),
                    rooms=sorted(rooms),
                    dedupe_id=uuid.uuid4().hex,
                    skip_user=actor.user_id,
                )
            )
            for room in rooms:
                await self.bus.publish(subjects.room(room), body)
        changed = PresenceChanged(
            user_id=actor.user_id, status=status, at=now, name=actor.name, avatar=actor.avatar
        )
        await self.bus.publish(
            subjects.command(subjects.USERS, "presence"),
            encode(Command(actor=actor, payload=changed)),
        )

    # --- client events ------------------------------------------------------------------

    async def event(self, sid: str, event: str, data: Any) -> acks.Ack | None:
        """One client event: the ack to send back, or None for events without one.

        Refused events (unknown, malformed, invalid) count against the socket's
        allowance (`Connection.strike`), since they are answered before the rate limit.
        Any unexpected failure is answered INTERNAL and logged once with the socket id.
        """
        route = BY_EVENT.get(event)
        try:
            if route is None:
                ack = acks.error(ErrorCode.VALIDATION_ERROR, f"unknown event {event!r}", "event")
            elif event in self._unserved:
                message = f"{event} is not served by this deployment"
                ack = acks.error(ErrorCode.NOT_IMPLEMENTED, message)
            else:
                ack = await self._dispatch(route, self._bucket_of[event], sid, data)
        except Exception:
            log.exception("event %r of %s failed", event, sid)
            ack = acks.error(ErrorCode.INTERNAL, "internal error")
        if ack.get("code") == ErrorCode.VALIDATION_ERROR:
            sock = self.registry.sockets.get(sid)
            if sock is not None:
                sock.conn.strike()
        return ack if route is None or route.ack else None

    async def _dispatch(
        self, route: Route[Any, Any], bucket: Bucket, sid: str, data: Any
    ) -> acks.Ack:
        sock = self.registry.sockets.get(sid)
        if sock is None:
            return acks.error(ErrorCode.UNAUTHORIZED, "not connected")
        try:
            if isinstance(data, msgspec.Raw) and bytes(data) != b"null":
                # Raw JSON from the lean WebSocket path: decoded and validated in one go.
                payload = self._decoders[route.event].decode(data)
            else:
                empty = data is None or isinstance(data, msgspec.Raw)
                payload = msgspec.convert({} if empty else data, route.payload)
        except msgspec.ValidationError as exc:
            return acks.validation(exc)
        except msgspec.DecodeError as exc:
            return acks.error(ErrorCode.VALIDATION_ERROR, f"malformed JSON: {exc}")
        retry_count = getattr(payload, "retry_count", None)
        try:
            wait_ms = await self.limiter.take(sock.actor.user_id, bucket)
            if wait_ms:
                ack = acks.retry(ErrorCode.RATE_LIMITED, "rate limit exceeded", wait_ms)
            elif route.domain == GATEWAY:
                ack = await self._local[route.action](sock, payload)
            else:
                reply = await self.bus.command(
                    route.domain,
                    route.action,
                    sock.actor,
                    payload,
                    origin_sid=sid,
                    timeout_ms=self.settings.ack_timeout_ms,
                )
                return acks.from_reply(reply, retry_count)
        except (RedisError, _Unavailable) as exc:
            log.warning("%s failed: %s", route.event, exc)
            ack = acks.retry(ErrorCode.UNAVAILABLE, "service unavailable, retry later", 1000)
        if retry_count is not None:
            ack["retryCount"] = retry_count
        return ack

    # --- typing --------------------------------------------------------------------------

    async def _typing_target(self, sock: LocalSocket, p: c.TypingChange) -> str | None:
        """The room (or `user:<id>` for a DM by peer) typing goes to; None = not allowed."""
        uid = sock.actor.user_id
        if p.target_user_id is not None:
            return None if p.target_user_id == uid else "user:" + p.target_user_id
        chat = p.conversation_id or p.group_id or ""
        if not self.registry.in_room(uid, chat):
            return None
        if p.group_id is not None:
            count = await self._member_count(sock.actor, p.group_id)
            if count > limits.TYPING_MAX_GROUP_SIZE:
                return None
        return chat

    async def _member_count(self, actor: Actor, group_id: str) -> int:
        cached = self._member_counts.get(group_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        query = MembershipQuery(group_id=group_id, user_id=actor.user_id)
        try:
            membership = await self.bus.query(_MEMBERSHIP, query, Membership, actor=actor)
        except (DomainError, RetryableError, QueryError) as exc:
            raise _Unavailable(f"groups unavailable: {exc}") from None
        count = membership.member_count
        self._member_counts[group_id] = (time.monotonic() + MEMBER_COUNT_TTL_S, count)
        return count

    async def _typing_start(self, sock: LocalSocket, p: c.TypingChange) -> acks.Ack:
        target = await self._typing_target(sock, p)
        if target is None:
            return acks.error(ErrorCode.FORBIDDEN, "not a member of this chat")
        if await self.typing.start(sock.actor, target):
            await self._relay_typing("typing:start", sock.actor, target)
        return acks.ok()

    async def _typing_stop(self, sock: LocalSocket, p: c.TypingChange) -> acks.Ack:
        target = await self._typing_target(sock, p)
        if target is None:
            return acks.error(ErrorCode.FORBIDDEN, "not a member of this chat")
        if await self.typing.stop(sock.actor.user_id, target):
            await self._relay_typing("typing:stop", sock.actor, target)
        return acks.ok()

    async def _typing_expired(self, actor: Actor, target: str) -> None:
        """No renewal in 10 s, or the typist's last socket left: tell the others."""
        await self.typing.stop(actor.user_id, target)
        await self._relay_typing("typing:stop", actor, target)

    async def _relay_typing(self, event: str, actor: Actor, target: str) -> None:
        is_dm_by_peer = target.startswith("user:")
        chat = "" if is_dm_by_peer else target
        typing = s.TypingEvent(
            user_id=actor.user_id,
            user_name=actor.name,
            user_avatar=actor.avatar,
            conversation_id=chat if ids.is_conversation(chat) else None,
            group_id=chat if ids.is_group(chat) else None,
        )
        fanout = Fanout(event=event, data=encode_json(typing), skip_user=actor.user_id)
        subject = (
            subjects.user(target.removeprefix("user:")) if is_dm_by_peer else subjects.room(chat)
        )
        await self.bus.publish(subject, encode(fanout))

    # --- presence ------------------------------------------------------------------------

    async def _presence_set(self, sock: LocalSocket, p: c.PresenceSet) -> acks.Ack:
        if await self.presence.set_manual_status(sock.actor.user_id, p.status):
            await self._announce(sock.actor, p.status)
        return acks.ok()

    async def _online_page(
        self, sock: LocalSocket, group_id: str, cursor: str | None, limit: int
    ) -> s.PresencePage | acks.Ack:
        query = MembersQuery(group_id=group_id)
        try:
            found = await self.bus.query(_MEMBERS, query, Members, actor=sock.actor)
        except (DomainError, RetryableError) as exc:
            return acks.refusal(exc)
        except QueryError as exc:
            raise _Unavailable(f"groups unavailable: {exc}") from None
        members = sorted(found.user_ids)
        flags = await self.presence.online(members, _now_ms())
        online = [uid for uid, on in zip(members, flags, strict=True) if on]
        start = int(cursor) if cursor and cursor.isdigit() else 0
        page = online[start : start + limit]
        more = start + limit < len(online)
        return s.PresencePage(
            online_user_ids=page,
            total=len(online),
            has_more=more,
            cursor=str(start + limit) if more else None,
            group_id=group_id,
        )

    async def _presence_query(self, sock: LocalSocket, p: c.PresenceQuery) -> acks.Ack:
        page = await self._online_page(sock, p.group_id, p.cursor, p.limit)
        return page if isinstance(page, dict) else acks.ok(page)

    async def _presence_subscribe(self, sock: LocalSocket, p: c.PresenceSubscribe) -> acks.Ack:
        page = await self._online_page(sock, p.group_id, None, limits.DEFAULT_PRESENCE_PAGE)
        if isinstance(page, dict):
            return page
        sock.conn.send(OutFrame.event("presence:state", encode_json(page)))
        return acks.ok()


class _Unavailable(Exception):
    """A service the gateway depends on did not answer."""


def _now_ms() -> int:
    return int(time.time() * 1000)
