"""One handler per `cmd.users.<action>`: decide (domain) → store → publish."""

from __future__ import annotations

from datetime import datetime

from chat_contracts import bus, client, limits, routes, server, subjects
from chat_contracts.bus import Command
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import Clock, SystemClock, iso
from chat_runtime.worker import Router
from chat_users import domain
from chat_users.announce import Announcer
from chat_users.directory import ChatDirectory
from chat_users.domain import CustomStatus, Device
from chat_users.store import UserStore

DOMAIN = subjects.USERS

PRESENCE_UPDATE = "presence:update"
LAST_SEEN = "presence:last_seen"
STATUS_UPDATED = "status:updated"
USER_BLOCKED = "user:blocked"
USER_UNBLOCKED = "user:unblocked"


class UserHandlers:
    """The users worker's commands. `router()` registers them on `cmd.users.*`."""

    def __init__(
        self,
        store: UserStore,
        *,
        publisher: Publisher,
        announcer: Announcer,
        directory: ChatDirectory,
        clock: Clock,
        notify_blocked: bool = True,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._announcer = announcer
        self._directory = directory
        self._clock = clock
        self._notify_blocked = notify_blocked

    def router(self) -> Router:
        """The command table: every action with its payload type."""
        router = Router(DOMAIN)
        router.internal("presence", bus.PresenceChanged, self.presence)
        router.route(routes.PRESENCE_LAST_SEEN, self.last_seen)
        router.route(routes.USER_BLOCK, self.block)
        router.route(routes.USER_UNBLOCK, self.unblock)
        router.internal("block_state", bus.BlockQuery, self.block_state)
        router.internal("hidden", bus.HiddenQuery, self.hidden)
        router.route(routes.STATUS_SET, self.status_set)
        router.route(routes.NOTIFICATION_REGISTER, self.device_register)
        router.route(routes.NOTIFICATION_UNREGISTER, self.device_unregister)
        router.internal("devices", bus.DevicesQuery, self.devices)
        return router

    # --- presence and last seen

    async def presence(self, command: Command[bus.PresenceChanged]) -> None:
        """A gateway announced a presence change: record the sighting, then
        `presence:update` (and, going offline, `presence:last_seen`) to the user's
        contacts in the rooms the gateway named. The empty answer tells the gateway it
        is done; a transient failure answers `retry` and the gateway sends it again."""
        event = command.payload
        seen = domain.sighting(event)
        await self._store.record(seen)
        await self.announce_presence(event.user_id, event.status, seen.seen_at, event.rooms)

    async def announce_presence(
        self, user_id: str, status: str, at: datetime | None, rooms: list[str] | None
    ) -> None:
        """`presence:update` with the custom status; offline adds `presence:last_seen`.

        `rooms` None (the sweeper: the gateway that knew them is gone) = ask for them.
        """
        stored = (await self._store.statuses([user_id])).get(user_id)
        custom = domain.status_text(domain.current(stored, self._clock.now()))
        offline = status == "offline" and at is not None
        update = server.PresenceUpdate(
            user_id=user_id,
            status=status,  # type: ignore[arg-type]
            last_seen_at=iso(at) if offline and at is not None else None,
            custom_status=custom,
        )
        events: list[tuple[str, server.Out]] = [(PRESENCE_UPDATE, update)]
        if offline and at is not None:
            events.append((LAST_SEEN, server.LastSeen(user_id=user_id, last_seen_at=iso(at))))
        hidden = await self._store.hidden(user_id)
        await self._announcer.to_contacts(user_id, events, hidden=hidden, rooms=rooms)

    async def last_seen(self, command: Command[client.LastSeenQuery]) -> server.LastSeenResult:
        """`presence:last_seen`: the asked users that are contacts (a chat in common, no
        block either way) and have a last seen, in request order."""
        actor = command.actor.user_id
        user_ids = command.payload.user_ids
        contacts = await self._directory.contacts_among(actor, user_ids)
        contacts.difference_update(await self._store.hidden(actor))
        known = await self._store.last_seen(sorted(contacts))
        return server.LastSeenResult(
            last_seen=[
                server.LastSeen(user_id=uid, last_seen_at=iso(at))
                for uid, at in domain.in_request_order(user_ids, known)
            ]
        )

    # --- blocks

    async def block(self, command: Command[client.UserRef]) -> server.Empty:
        """`user:block`: store, tell the caches, tell the blocked user (if configured)."""
        actor, target = command.actor.user_id, command.payload.user_id
        domain.require_blockable(actor, await self._store.profile(target), target)
        if await self._store.block(actor, target, self._clock.now()):
            change = bus.BlockChanged(blocker_id=actor, blocked_id=target, blocked=True)
            await self._publisher.event(subjects.USER_BLOCK_CHANGED, change)
            if self._notify_blocked:
                notice = server.UserBlocked(blocked_by=actor)
                await self._publisher.to_user(target, USER_BLOCKED, notice)
        return server.Empty()

    async def unblock(self, command: Command[client.UserRef]) -> server.Empty:
        """`user:unblock`: a user that was not blocked acks `{}` and nothing happens."""
        actor, target = command.actor.user_id, command.payload.user_id
        domain.require_blockable(actor, await self._store.profile(target), target)
        if await self._store.unblock(actor, target):
            change = bus.BlockChanged(blocker_id=actor, blocked_id=target, blocked=False)
            await self._publisher.event(subjects.USER_BLOCK_CHANGED, change)
            if self._notify_blocked:
                notice = server.UserUnblocked(unblocked_by=actor)
                await self._publisher.to_user(target, USER_UNBLOCKED, notice)
        return server.Empty()

    async def block_state(self, command: Command[bus.BlockQuery]) -> bus.BlockState:
        """`cmd.users.block_state`: the blocking rule for one pair (calls, messages)."""
        query = command.payload
        blockers = await self._store.blockers(query.user_id, query.other_user_id)
        by = domain.blocked_by(query.user_id, query.other_user_id, blockers)
        return bus.BlockState(blocked=by is not None, blocked_by=by)

    async def hidden(self, command: Command[bus.HiddenQuery]) -> bus.Hidden:
        """`cmd.users.hidden`: everyone with a block between them and the user."""
        return bus.Hidden(user_ids=await self._store.hidden(command.payload.user_id))

    # --- custom status

    async def status_set(self, command: Command[client.StatusSet]) -> server.Empty:
        """`status:set`: store, then `status:updated` to contacts and own other sockets."""
        actor = command.actor.user_id
        status = domain.custom_status(actor, command.payload, self._clock.now())
        await self._store.set_status(actor, status)
        await self.announce_status(actor, status, skip_sid=command.origin_sid)
        return server.Empty()

    async def announce_status(
        self, user_id: str, status: CustomStatus | None, *, skip_sid: str | None = None
    ) -> None:
        """`status:updated` (`status: ""` when cleared or expired) to contacts and self."""
        event = domain.status_event(user_id, status)
        hidden = await self._store.hidden(user_id)
        await self._announcer.to_contacts(user_id, [(STATUS_UPDATED, event)], hidden=hidden)
        await self._announcer.to_self(user_id, STATUS_UPDATED, event, skip_sid=skip_sid)

    # --- push devices

    async def device_register(self, command: Command[client.NotificationRegister]) -> server.Empty:
        """`notification:register`: add or replace; past 25 devices the oldest goes."""
        payload = command.payload
        provider = domain.provider_of(payload.platform, payload.provider)
        domain.require_token(provider, payload.token)
        device = Device(
            user_id=command.actor.user_id,
            device_id=payload.device_id,
            platform=payload.platform,
            token=payload.token,
            registered_at=self._clock.now(),
            provider=provider,
            previews=payload.previews,
        )
        await self._store.register_device(device, limits.MAX_PUSH_DEVICES)
        return server.Empty()

    async def device_unregister(
        self, command: Command[client.NotificationUnregister]
    ) -> server.Empty:
        """`notification:unregister`: an unknown device acks `{}` too (already gone)."""
        await self._store.unregister_device(command.actor.user_id, command.payload.device_id)
        return server.Empty()

    async def devices(self, command: Command[bus.DevicesQuery]) -> bus.Devices:
        """`cmd.users.devices`: how many push devices a user has (calls: ring or refuse)."""
        return bus.Devices(count=len(await self._store.devices(command.payload.user_id)))


def user_handlers(
    store: UserStore,
    bus: Bus,
    *,
    clock: Clock | None = None,
    directory: ChatDirectory | None = None,
    notify_blocked: bool = True,
) -> UserHandlers:
    """The handlers wired to `bus` the way the worker runs them."""
    directory = directory or ChatDirectory(bus)
    return UserHandlers(
        store,
        publisher=Publisher(bus),
        announcer=Announcer(bus, directory, limits.PRESENCE_FANOUT_MAX_GROUP),
        directory=directory,
        clock=clock or SystemClock(),
        notify_blocked=notify_blocked,
    )
