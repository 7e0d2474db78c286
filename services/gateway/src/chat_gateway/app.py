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
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import socketio
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_contracts import DomainError, ErrorCode, RetryableError, subjects
from chat_contracts.bus import Actor, ChatIds, Empty
from chat_contracts.routes import BY_EVENT, GATEWAY, ROUTES, Route, unserved
from chat_gateway import acks, clientfiles, jsonmod
from chat_gateway.auth import TokenVerifier, Unauthorized
from chat_gateway.conn import Connection, SioConnection
from chat_gateway.fanout import Delivery
from chat_gateway.lean import LeanConnection, Refused
from chat_gateway.metrics import CONNECTS, REFUSALS, EventMetrics
from chat_gateway.policy import HandshakeLimiter, TransportPolicy
from chat_gateway.presence import Presence, PresenceEvents
from chat_gateway.ratelimit import Bucket, RateLimiter, buckets_by_event
from chat_gateway.registry import LocalSocket, Registry
from chat_gateway.sessions import Sessions, sweep_forever
from chat_gateway.settings import GatewaySettings
from chat_gateway.sio import GuardedServer
from chat_gateway.typing_relay import TypingRelay
from chat_runtime import memory, trace
from chat_runtime.batch import CommandBatcher
from chat_runtime.blocks import HiddenSets
from chat_runtime.bus import Bus, QueryError
from chat_runtime.clock import Clock, SystemClock
from chat_runtime.redis_client import primary_locator
from chat_runtime.worker import cancel_tasks

log = logging.getLogger(__name__)

LocalHandler = Callable[[LocalSocket, Any], Awaitable[acks.Ack]]


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
        # `sio.GuardedServer` answers the packets python-socketio cannot parse.
        self.sio = GuardedServer(
            self.registry,
            async_mode="aiohttp",
            # Events of a session run in arrival order, one at a time (a POST or a
            # WebSocket read waits for them: back-pressure), like the lean path.
            async_handlers=False,
            logger=False,
            engineio_logger=False,
            **self.policy.engineio_options(),
        )
        self.sessions = Sessions(
            self.registry, self.sio.eio, settings.connect_timeout_ms, self._spawn
        )
        self.delivery = Delivery(bus, self.registry)
        #: Client commands of one loop turn go to their worker pool in one request.
        self.commands = CommandBatcher(bus, window_ms=settings.command_batch_window_ms)
        self.hidden = HiddenSets(bus)
        self._presence_store = Presence(
            redis,
            settings.node_id,
            settings.presence_lease_ms,
            settings.presence_grace_ms,
            redis_url=settings.redis_url,
            timeout_ms=settings.redis_timeout_ms,
            locate=primary_locator(settings),
        )
        presence = self._presence_store
        self.presence = PresenceEvents(
            bus,
            presence,
            self.registry,
            self.hidden,
            self.clock,
            heartbeat_ms=settings.heartbeat_ms,
            lease_ms=settings.presence_lease_ms,
        )
        # Behind Sentinel, the limiter's own connection finds the primary the same way.
        self.limiter = RateLimiter(
            settings.redis_address, settings.redis_timeout_ms, primary_locator(settings)
        )
        self.typing = TypingRelay(
            bus, redis, self.registry, self.hidden, expiry_ms=settings.typing_expiry_ms
        )
        self._bucket_of = buckets_by_event(settings)
        #: One JSON decoder per event, built once (msgspec: reuse decoders).
        self._decoders = {route.event: msgspec.json.Decoder(route.payload) for route in ROUTES}
        #: Answered NOT_IMPLEMENTED at once (no handler yet, or a service left out).
        self._unserved = unserved(settings.optional_services)
        #: Set on SIGTERM: readiness fails from then on.
        self.draining = False
        self.metrics = EventMetrics()
        self._background: set[asyncio.Task[None]] = set()
        #: The previous `/debug/gc` heap snapshot (only when tracemalloc runs).
        self._last_snapshot: tracemalloc.Snapshot | None = None
        self._local: dict[str, LocalHandler] = {
            "typing_start": self._typing_start,
            "typing_stop": self._typing_stop,
            "presence_set": self.presence.set,
            "presence_query": self.presence.query,
            "presence_subscribe": self.presence.subscribe,
        }
        self.sio.on("connect", self._sio_connect)
        self.sio.on("disconnect", self._sio_disconnect)
        self.sio.on("*", self._sio_event)

    # --- HTTP ------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        """The aiohttp application: Socket.IO at /socket.io/, plus health endpoints."""
        app = web.Application()
        if "polling" in self.settings.transports:
            self.sio.attach(app)
        else:
            # Direct WebSockets never reach aiohttp (lean.py serves them); what does is
            # long-polling or an upgrade of a polling session: both refused, saying why.
            app.router.add_route("*", "/socket.io/", self._polling_disabled)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        if self.settings.debug_endpoints:
            app.router.add_post("/debug/gc", self._debug_gc)
            app.router.add_get("/debug/stats", self._debug_stats)
        clientfiles.mount(app, self.settings)
        return app

    async def _polling_disabled(self, _request: web.Request) -> web.Response:
        # Engine.IO's error body shape ({code, message}); code 0 = "Transport unknown".
        message = (
            "HTTP long-polling is disabled on this server (CHAT_TRANSPORTS=websocket): "
            "connect with transports: ['websocket']"
        )
        return web.json_response({"code": 0, "message": message}, status=400)

    async def _debug_gc(self, request: web.Request) -> web.Response:
        # Collections per generation so far, read before this call's own collection:
        # garbage cycles wait in the oldest generation until its next pass.
        stats = gc.get_stats()
        pending = gc.get_count()
        garbage: Counter[str] | None = None
        if request.query.get("garbage") == "1":
            # What this collection finds unreachable, by type: where garbage cycles come
            # from (the soak's gateways grew with nats-py subscriptions this way).
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                collected = gc.collect()
                garbage = Counter(type(o).__qualname__ for o in gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
            gc.collect()  # SAVEALL kept the cycles alive: free them now.
        else:
            collected = gc.collect()
        # The 40 most numerous live object types: what grows between two readings is
        # what leaks (the soak found 5 MiB/min of gateway RSS growth this way).
        types = Counter(type(o).__qualname__ for o in gc.get_objects())
        body: dict[str, Any] = {
            "collected": collected,
            "sockets": len(self.registry.sockets),
            "types": dict(types.most_common(40)),
            "generations": stats,
            "pending": pending,
        }
        if garbage is not None:
            body["garbage"] = dict(garbage.most_common(40))
        if tracemalloc.is_tracing():
            # Started with PYTHONTRACEMALLOC=n: where memory grew since the last call.
            snapshot = tracemalloc.take_snapshot()
            if self._last_snapshot is not None:
                grown = snapshot.compare_to(self._last_snapshot, "lineno")[:25]
                body["grown"] = [str(stat) for stat in grown]
            self._last_snapshot = snapshot
        if request.query.get("trim") == "1":
            # RSS before and after glibc hands its free pages back: what trimming gives
            # back is allocator slack, not a leak.
            body["trim"] = memory.trim_rss()
        return web.json_response(body)

    async def _debug_stats(self, _request: web.Request) -> web.Response:
        # The bench divides one by the other: the mean number of commands per request.
        batcher = self.commands
        return web.json_response({"requests": batcher.requests, "commands": batcher.commands})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def redis_ready(self) -> bool:
        """Redis answers a PING within a second."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=1))
        return False

    def sockets_by_transport(self) -> dict[str, int]:
        """Connected sockets by transport: `websocket` (direct or upgraded) or `polling`."""
        counts = {"websocket": 0, "polling": 0}
        for sock in self.registry.sockets.values():
            conn = sock.conn
            if isinstance(conn, SioConnection):
                counts[self.sio.eio.transport(conn.eio_sid) or "polling"] += 1
            else:
                counts["websocket"] += 1
        return counts

    def queued_events(self) -> int:
        """Parsed events waiting on the lean path's sockets (each holds at most
        `socket_max_in_flight`; the rest of a full socket's input stays unparsed)."""
        return sum(
            sock.conn.queued
            for sock in self.registry.sockets.values()
            if isinstance(sock.conn, LeanConnection)
        )

    async def _readyz(self, _request: web.Request) -> web.Response:
        redis_ok = await self.redis_ready()
        ready = self.bus.connected and redis_ok and not self.draining
        body = {"nats": self.bus.connected, "redis": redis_ok}
        if self.draining:
            body["draining"] = True
        return web.json_response(body, status=200 if ready else 503)

    # --- lifecycle ---------------------------------------------------------------------

    async def start_background(self) -> None:
        """Start the fan-out inbox, the block-change listener, the presence heartbeat and
        the session sweep."""
        await self.delivery.start()
        await self.bus.subscribe(subjects.USER_BLOCK_CHANGED, self.hidden.on_change)
        self._spawn(self.presence.heartbeat())
        self._spawn(
            sweep_forever(
                self.sessions, lambda: self.clock.now().timestamp(), self.handshakes.prune
            )
        )

    async def close(self) -> None:
        """Stop timers and subscriptions."""
        self.typing.close()
        self.limiter.close()
        self._presence_store.close()
        # Awaited, not only cancelled: the heartbeat's redis-py call can drop a
        # cancellation (cancel_tasks), and must not run on into redis.aclose().
        await cancel_tasks(list(self._background))
        await self.presence.close()
        await self.delivery.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        traced = trace.begin(name="connect")
        user = trace.user.set(None)  # set once the token names the user
        try:
            await self._connect(conn, auth)
        except Refused as exc:
            REFUSALS.labels(str(exc.data.get("code"))).inc()
            raise
        except Exception:
            log.exception("handshake of %s failed", conn.sid)
            await self._forget(conn.sid)
            REFUSALS.labels(ErrorCode.INTERNAL.value).inc()
            raise Refused("internal error", {"code": ErrorCode.INTERNAL.value}) from None
        finally:
            trace.end(traced)
            trace.user.reset(user)
        CONNECTS.inc()

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
        trace.user.set(actor.user_id)
        if len(self.registry.by_user.get(actor.user_id, ())) >= self.settings.max_sockets_per_user:
            log.info("handshake refused: %s holds too many sockets", actor.user_id)
            raise Refused("too many connections", {"code": ErrorCode.LIMIT_EXCEEDED.value})
        await self.delivery.apply(self.registry.add_socket(conn, actor))
        self.sessions.connected(conn.sid, session.expires_at)
        try:
            rooms = await self._chats_of(actor)
            await self.delivery.apply(self.registry.join_user(actor.user_id, rooms))
            await self.presence.connected(actor)
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
                self.commands.query(subjects.GROUPS, "mine", Empty(), ChatIds, actor=actor),
                self.commands.query(subjects.MESSAGES, "mine", Empty(), ChatIds, actor=actor),
            )
        except (DomainError, RetryableError, QueryError) as exc:
            raise _Unavailable(f"chat list unavailable: {exc}") from None
        return groups.chat_ids + dms.chat_ids

    async def disconnect(self, sid: str) -> None:
        """A socket left: rooms, typing and presence follow (offline after the grace)."""
        sock = await self._forget(sid)
        if sock is None or sock.actor.user_id in self.registry.by_user:
            return
        await self.typing.gone(sock.actor)
        await self.presence.last_local_socket_gone(sock.actor)

    async def _forget(self, sid: str) -> LocalSocket | None:
        self.sessions.left(sid)
        sock, interest = self.registry.remove_socket(sid)
        await self.delivery.apply(interest)
        return sock

    # --- client events ------------------------------------------------------------------

    async def event(self, sid: str, event: str, data: Any) -> acks.Ack | None:
        """One client event: the ack to send back, or None for events without one.

        An event without an ack (typing) past its rate limit still returns its `retry`
        ack: the lean path then pauses the socket's reading like for any flood (inbox.py;
        it sends an ack only when the client asked for one). Refused events (unknown,
        malformed, invalid) count against the socket's allowance (`Connection.strike`),
        since they are answered before the rate limit. Any unexpected failure is
        answered INTERNAL and logged once with the socket id. Each event starts a trace
        (its id in every log line and NATS header it causes) and is counted with its ack
        status, code and latency.
        """
        started = time.perf_counter()
        traced = trace.begin(name=event)
        known = self.registry.sockets.get(sid)
        user = trace.user.set(known.actor.user_id if known is not None else None)
        route = BY_EVENT.get(event)
        try:
            try:
                if route is None:
                    ack = acks.error(
                        ErrorCode.VALIDATION_ERROR, f"unknown event {event!r}", "event"
                    )
                elif event in self._unserved:
                    message = f"{event} is not served by this deployment"
                    ack = acks.error(ErrorCode.NOT_IMPLEMENTED, message)
                else:
                    ack = await self._dispatch(route, self._bucket_of[event], sid, data)
            except Exception:
                log.exception("event %r of %s failed", event, sid)
                ack = acks.error(ErrorCode.INTERNAL, "internal error")
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s %s in %.2f ms",
                    event,
                    ack["status"],
                    ack.get("code", ""),
                    (time.perf_counter() - started) * 1000,
                )
        finally:
            trace.end(traced)
            trace.user.reset(user)
        self.metrics.observe(event, ack["status"], ack.get("code"), time.perf_counter() - started)
        if ack.get("code") == ErrorCode.VALIDATION_ERROR:
            sock = self.registry.sockets.get(sid)
            if sock is not None:
                sock.conn.strike()
        limited = ack.get("code") == ErrorCode.RATE_LIMITED
        return ack if route is None or route.ack or limited else None

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
                reply = await self.commands.command(
                    route.domain,
                    route.action,
                    sock.actor,
                    payload,
                    origin_sid=sid,
                    timeout_ms=self.settings.ack_timeout_ms,
                )
                return acks.from_reply(reply, retry_count)
        except (RedisError, _Unavailable, RetryableError, QueryError) as exc:
            log.warning("%s failed: %s", route.event, exc)
            ack = acks.retry(ErrorCode.UNAVAILABLE, "service unavailable, retry later", 1000)
        if retry_count is not None:
            ack["retryCount"] = retry_count
        return ack

    # --- typing (rules and relay: typing_relay.py) ------------------------------------

    async def _typing_start(self, sock: LocalSocket, p: Any) -> acks.Ack:
        await self.typing.start(sock, p)
        return acks.ok()

    async def _typing_stop(self, sock: LocalSocket, p: Any) -> acks.Ack:
        await self.typing.stop(sock, p)
        return acks.ok()


class _Unavailable(Exception):
    """A service the gateway depends on did not answer."""
