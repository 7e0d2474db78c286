"""One handler per `cmd.users.<action>`."""

from __future__ import annotations

from chat_contracts import bus, client, routes, server
from chat_contracts.bus import Command
from chat_runtime.clock import iso
from chat_runtime.worker import Router
from chat_users import domain
from chat_users.store import UserStore

DOMAIN = "users"


class UserHandlers:
    """The users worker's commands. `router()` registers them on `cmd.users.*`."""

    def __init__(self, store: UserStore) -> None:
        self._store = store

    def router(self) -> Router:
        """The command table: every action with its payload type."""
        router = Router(DOMAIN)
        router.internal("presence", bus.PresenceChanged, self.presence)
        router.route(routes.PRESENCE_LAST_SEEN, self.last_seen)
        return router

    async def presence(self, command: Command[bus.PresenceChanged]) -> None:
        """A gateway announced a presence change (published, no reply expected):
        refresh the profile and last seen."""
        await self._store.record(domain.sighting(command.payload))

    async def last_seen(self, command: Command[client.LastSeenQuery]) -> server.LastSeenResult:
        """`presence:last_seen`: the asked users that have a last seen, in request order."""
        user_ids = command.payload.user_ids
        known = await self._store.last_seen(user_ids)
        return server.LastSeenResult(
            last_seen=[
                server.LastSeen(user_id=uid, last_seen_at=iso(at))
                for uid, at in domain.in_request_order(user_ids, known)
            ]
        )
