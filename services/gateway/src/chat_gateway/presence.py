"""Presence: Redis state of this gateway's users, and the presence events it serves.

Keys: see `chat_runtime.presence` (the calls service reads the same leases). The
gateway writes the leases, the grace marker and the pending offline entry (atomic Lua,
several gateways may race for one user), heartbeats in `gw:nodes`, and announces
`online` and manual status changes by publishing one `PresenceChanged` (with the
user's rooms) to the users service, which applies blocks, adds the custom status and
publishes once per room. Offline is announced by the users service's sweep when the
grace ends, also for the users of a gateway that died (its heartbeat stops).

An announcement is a request, answered once the users service has recorded the sighting
and published the update, and retried in the background while the answer is `retry`
(no users worker, or one restarting, or its group look-ups unavailable): a published
notice was simply lost then, and the contacts never heard that the user came online.
A newer announcement of the same user replaces one still retrying (presence is a state,
the latest wins).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat_contracts import DomainError, ErrorCode, limits, subjects
from chat_contracts import client as c
from chat_contracts import server as s
from chat_contracts.bus import Actor, Command, Members, MembersQuery, PresenceChanged
from chat_gateway import acks, redis_scripts
from chat_gateway.conn import OutFrame
from chat_gateway.registry import LocalSocket, Registry
from chat_gateway.resp import DEFAULT_TIMEOUT_MS, Locate, ScriptRunner
from chat_runtime import presence as keys
from chat_runtime.blocks import HiddenSets
from chat_runtime.bus import Bus, encode, encode_json
from chat_runtime.clock import Clock, iso
from chat_runtime.worker import cancel_tasks

log = logging.getLogger(__name__)

_MEMBERS = subjects.command(subjects.GROUPS, "members")
_ANNOUNCE = subjects.command(subjects.USERS, "presence")

#: Pauses between the tries of an announcement answered `retry`: 15.75 s in all, more
#: than a users worker takes to restart (~1-2 s here) or a pod to be rescheduled.
ANNOUNCE_PAUSES_S: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def now_ms() -> int:
    """Wall-clock milliseconds (lease scores are compared with Redis `TIME`)."""
    return int(time.time() * 1000)


class Presence:
    """Presence transitions of the users with sockets on this gateway (Redis only)."""

    def __init__(
        self,
        redis: Redis,
        node_id: str,
        lease_ms: int,
        grace_ms: int,
        *,
        redis_url: str,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        locate: Locate | None = None,
    ) -> None:
        self._redis = redis
        self._node = node_id
        self._lease_ms = lease_ms
        self._grace_ms = grace_ms
        # Connect and disconnect run once per socket, thousands at once when a gateway's
        # clients move here: on one pipelined connection each (resp.py), not redis-py's
        # pool, which refused 18,761 of them with "Too many connections" in the
        # reconnect storm (bench metric 7).
        self._connect = ScriptRunner(redis_url, redis_scripts.CONNECT, timeout_ms, locate)
        self._disconnect = ScriptRunner(redis_url, redis_scripts.DISCONNECT, timeout_ms, locate)
        self._release = redis.register_script(redis_scripts.RELEASE_PREDECESSOR)

    def close(self) -> None:
        """Close the pipelined connections."""
        self._connect.close()
        self._disconnect.close()

    def _keys(self, user_id: str) -> list[str]:
        return [
            keys.conns_key(user_id),
            keys.grace_key(user_id),
            keys.node_users_key(self._node),
            keys.PENDING,
        ]

    async def connected(self, user_id: str) -> str | None:
        """The user's first socket here; the status to announce (its manual status, or
        `online`), or None when the user was already online or in the grace period."""
        status = await self._connect(
            keys=[*self._keys(user_id), keys.status_key(user_id)],
            args=[self._node, self._lease_ms, user_id],
        )
        if status is None:
            return None
        return status.decode() if isinstance(status, bytes) else str(status)

    async def disconnected(self, user_id: str) -> bool:
        """The user's last socket here left; True when none is left anywhere (the grace
        runs; the users service announces offline after it unless the user is back)."""
        last = await self._disconnect(
            keys=self._keys(user_id),
            args=[self._node, user_id, self._grace_ms, keys.GRACE_MARKER_TTL_MS],
        )
        return bool(int(last))

    async def release_predecessor(self, local_user_ids: Iterable[str]) -> int:
        """At start: hand the users a crashed predecessor with this node id left behind
        to the offline grace (see `redis_scripts.RELEASE_PREDECESSOR`); also the first beat."""
        released = await self._release(
            keys=[keys.NODES, keys.node_users_key(self._node), keys.PENDING],
            args=[self._node, self._grace_ms, keys.GRACE_MARKER_TTL_MS, *local_user_ids],
        )
        return int(released)

    async def beat(self, at_ms: int) -> None:
        """This gateway is alive (`gw:nodes` score = last beat)."""
        await self._redis.zadd(keys.NODES, {self._node: at_ms})

    async def refresh(self, user_ids: Iterable[str], at_ms: int) -> None:
        """Heartbeat, and extend this gateway's lease for every local user (one pipeline)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.NODES, {self._node: at_ms})
            for user_id in user_ids:
                pipe.zadd(keys.conns_key(user_id), {self._node: at_ms + self._lease_ms})
                pipe.pexpire(keys.conns_key(user_id), self._lease_ms)
            await pipe.execute()

    async def manual_status(self, user_id: str) -> str:
        """`online`, `away` or `busy` as the user set it."""
        value = await self._redis.get(keys.status_key(user_id))
        if isinstance(value, bytes):
            return value.decode()
        return value or "online"

    async def set_manual_status(self, user_id: str, status: str) -> bool:
        """Store the manual status; True when it changed."""
        previous = await self.manual_status(user_id)
        if status == "online":
            await self._redis.delete(keys.status_key(user_id))
        else:
            await self._redis.set(keys.status_key(user_id), status)
        return previous != status

    async def online(self, user_ids: list[str], at_ms: int) -> list[bool]:
        """Whether each user counts as online (a live lease, or still in the grace period)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(keys.conns_key(user_id), at_ms, "+inf")
                pipe.exists(keys.grace_key(user_id))
            flags = await pipe.execute()
        return [bool(flags[i] or flags[i + 1]) for i in range(0, len(flags), 2)]


class PresenceEvents:
    """`presence:set`, `presence:query`, `presence:subscribe`, and the announcements."""

    def __init__(
        self,
        bus: Bus,
        presence: Presence,
        registry: Registry,
        hidden: HiddenSets,
        clock: Clock,
        *,
        heartbeat_ms: int,
        lease_ms: int,
        pauses_s: tuple[float, ...] = ANNOUNCE_PAUSES_S,
    ) -> None:
        self._bus = bus
        self._presence = presence
        self._registry = registry
        self._hidden = hidden
        self._clock = clock
        self._heartbeat_ms = heartbeat_ms
        self._lease_ms = lease_ms
        self._pauses_s = pauses_s
        #: user id -> its announcement still being delivered.
        self._announcing: dict[str, asyncio.Task[None]] = {}

    async def connected(self, actor: Actor) -> None:
        """After a socket joined its rooms: the user's first socket here may bring it online."""
        if len(self._registry.by_user.get(actor.user_id, ())) != 1:
            return
        status = await self._presence.connected(actor.user_id)
        if status is not None:
            await self.announce(actor, status)

    async def last_local_socket_gone(self, actor: Actor) -> None:
        """The user has no socket here any more (offline follows after the grace)."""
        try:
            await self._presence.disconnected(actor.user_id)
        except RedisError as exc:
            log.warning("presence disconnect of %s failed: %s", actor.user_id, exc)

    async def announce(self, actor: Actor, status: str) -> None:
        """One `PresenceChanged` to the users service, which fans it out to contacts;
        delivered in the background (see the module docstring), not awaited."""
        changed = PresenceChanged(
            user_id=actor.user_id,
            status=status,
            at=iso(self._clock.now()),
            name=actor.name,
            avatar=actor.avatar,
            rooms=sorted(self._registry.rooms_of(actor.user_id)),
        )
        body = encode(Command(actor=actor, payload=changed))
        older = self._announcing.pop(actor.user_id, None)
        if older is not None:
            older.cancel()
        task = asyncio.ensure_future(self._deliver(actor.user_id, status, body))
        self._announcing[actor.user_id] = task
        task.add_done_callback(lambda done: self._forget(actor.user_id, done))

    async def _deliver(self, user_id: str, status: str, body: bytes) -> None:
        for pause in (*self._pauses_s, None):
            reply = await self._bus.request(_ANNOUNCE, body)
            if reply.status == "ok":
                return
            if reply.status == "error":
                log.warning("presence %s of %s refused: %s", status, user_id, reply.error)
                return
            if pause is None:
                break
            await asyncio.sleep(pause)
        log.warning(
            "presence %s of %s not announced: the users service answered retry %d times",
            status,
            user_id,
            len(self._pauses_s) + 1,
        )

    def _forget(self, user_id: str, done: asyncio.Task[None]) -> None:
        if self._announcing.get(user_id) is done:
            del self._announcing[user_id]

    async def close(self) -> None:
        """Stop the announcements still being retried."""
        await cancel_tasks(list(self._announcing.values()))

    async def heartbeat(self) -> None:
        """Beat every `heartbeat_ms`, and refresh the leases every third of a lease (one
        pipeline of 2 commands per local user) until cancelled."""
        next_refresh = 0
        try:
            released = await self._presence.release_predecessor(list(self._registry.by_user))
            if released:
                log.warning("%d users of a previous run of this gateway go offline", released)
        except RedisError as exc:
            log.warning("presence: releasing a previous run's users failed: %s", exc)
        while True:
            at = now_ms()
            try:
                if at >= next_refresh:
                    await self._presence.refresh(list(self._registry.by_user), at)
                    next_refresh = at + self._lease_ms // 3
                else:
                    await self._presence.beat(at)
            except RedisError as exc:
                log.warning("presence heartbeat failed: %s", exc)
            await asyncio.sleep(self._heartbeat_ms / 1000)

    # --- client events

    async def set(self, sock: LocalSocket, p: c.PresenceSet) -> acks.Ack:
        """`presence:set`: the manual status; contacts hear of a change."""
        if await self._presence.set_manual_status(sock.actor.user_id, p.status):
            await self.announce(sock.actor, p.status)
        return acks.ok()

    async def query(self, sock: LocalSocket, p: c.PresenceQuery) -> acks.Ack:
        """`presence:query`: one page of a group's online members."""
        page = await self._online_page(sock, p.group_id, p.cursor, p.limit)
        return page if isinstance(page, dict) else acks.ok(page)

    async def subscribe(self, sock: LocalSocket, p: c.PresenceSubscribe) -> acks.Ack:
        """`presence:subscribe`: the first page as `presence:state`."""
        page = await self._online_page(sock, p.group_id, None, limits.DEFAULT_PRESENCE_PAGE)
        if isinstance(page, dict):
            return page
        sock.conn.send(OutFrame.event("presence:state", encode_json(page)))
        return acks.ok()

    async def _online_page(
        self, sock: LocalSocket, group_id: str, cursor: str | None, limit: int
    ) -> s.PresencePage | acks.Ack:
        """Online members in id order (the groups service checks the asker is a member),
        minus the users with a block between them and the asker; the cursor is an offset
        into that list."""
        try:
            start = page_start(cursor)
        except DomainError as exc:
            return acks.error(exc.code, exc.message, exc.field)
        query = MembersQuery(group_id=group_id)
        try:
            found = await self._bus.query(_MEMBERS, query, Members, actor=sock.actor)
        except DomainError as exc:  # not a member, no such group
            return acks.error(exc.code, exc.message, exc.field)
        hidden = await self._hidden.of(sock.actor.user_id)
        members = sorted(set(found.user_ids) - hidden)
        flags = await self._presence.online(members, now_ms())
        online = [uid for uid, on in zip(members, flags, strict=True) if on]
        page = online[start : start + limit]
        more = start + limit < len(online)
        return s.PresencePage(
            online_user_ids=page,
            total=len(online),
            has_more=more,
            cursor=str(start + limit) if more else None,
            group_id=group_id,
        )


def page_start(cursor: str | None) -> int:
    """The offset a `presence:query` cursor names (our own decimal offsets).

    `str.isdigit` accepts "²" and other digits `int` refuses: only ASCII digits count.
    """
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit()):
        raise DomainError(ErrorCode.VALIDATION_ERROR, "malformed cursor", field="cursor")
    return int(cursor)
