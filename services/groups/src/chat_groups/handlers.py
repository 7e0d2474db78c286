"""One handler per `cmd.groups.<action>`: check → store → publish, then the ack result.

Fan-out happens only after the store call returned, i.e. after the write is durable.
A user's own joining or leaving travels on its user subject together with the event
announcing it (see `chat_contracts.bus.Fanout`); the other members get the room event.
"""

from __future__ import annotations

from chat_contracts import bus, client, routes, server, subjects
from chat_contracts.bus import Command
from chat_groups import domain
from chat_groups.domain import ADMIN, MEMBER, Access, GroupRecord, Member, Removal
from chat_groups.store import GroupStore
from chat_runtime.bus import Publisher
from chat_runtime.clock import Clock, IdGenerator
from chat_runtime.worker import Router

DOMAIN = "groups"

MEMBER_ADDED = "group:member:added"
MEMBER_REMOVED = "group:member:removed"
MEMBER_ROLE_CHANGED = "group:member:role_changed"
GROUP_UPDATED = "group:updated"
GROUP_DELETED = "group:deleted"


def _result(access: Access) -> server.GroupResult:
    group, role = domain.require_member(access)
    return server.GroupResult(group=domain.view(group, role))


class GroupHandlers:
    """The groups worker's commands. `router()` registers them on `cmd.groups.*`."""

    def __init__(
        self, store: GroupStore, publisher: Publisher, clock: Clock, ids: IdGenerator
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._ids = ids

    def router(self) -> Router:
        """The command table: every action with its payload type."""
        router = Router(DOMAIN)
        router.route(routes.GROUP_CREATE, self.create)
        router.route(routes.GROUP_UPDATE, self.update)
        router.route(routes.GROUP_DELETE, self.delete)
        router.route(routes.GROUP_MEMBER_ADD, self.member_add)
        router.route(routes.GROUP_MEMBER_REMOVE, self.member_remove)
        router.route(routes.GROUP_MEMBER_ROLE, self.member_role)
        router.route(routes.GROUPS_LIST, self.list_groups)
        router.route(routes.GROUP_GET, self.get)
        router.internal("membership", bus.MembershipQuery, self.membership)
        router.internal("members", bus.MembersQuery, self.members)
        router.internal("mine", bus.Empty, self.mine)
        return router

    # --- client commands ----------------------------------------------------------

    async def create(self, command: Command[client.GroupCreate]) -> server.GroupResult:
        """`group:create`: the creator becomes ADMIN; every member learns of every member."""
        payload, creator = command.payload, command.actor.user_id
        others = domain.plan_create(creator, payload.member_ids)
        now = self._clock.now()
        members = [
            Member(user_id=creator, role=ADMIN, joined_at=now),
            *(Member(user_id=uid, role=MEMBER, joined_at=now) for uid in others),
        ]
        group = domain.new_group(
            self._ids.new(domain.GROUP_ID_PREFIX),
            creator,
            name=payload.name,
            description=payload.description,
            avatar_url=payload.avatar_url,
            member_count=len(members),
            at=now,
        )
        await self._store.create(group, members)
        # Every member is new: each gets the room join and all the member events in one
        # delivery (not a room event, which would race the gateway's room subscription).
        # One message on `rt.users` for all of them: NATS carries the N events once, not
        # once per member (see `Publisher.to_users`).
        await self._publisher.to_users(
            [m.user_id for m in members],
            [
                (
                    MEMBER_ADDED,
                    server.GroupMemberAdded(
                        group_id=group.id, user_id=m.user_id, added_by=creator, role=m.role
                    ),
                )
                for m in members
            ],
            join=[group.id],
        )
        return server.GroupResult(group=domain.view(group, ADMIN))

    async def update(self, command: Command[client.GroupUpdate]) -> server.GroupResult:
        """`group:update` (admins): emits only the fields that changed, if any."""
        payload, actor = command.payload, command.actor.user_id
        requested = domain.requested_patch(payload.name, payload.description, payload.avatar_url)
        updated = await self._store.update(payload.group_id, actor, requested)
        if not updated.patch.empty:
            await self._publisher.to_room(
                payload.group_id,
                GROUP_UPDATED,
                domain.updated_event(payload.group_id, actor, updated.patch),
            )
        return _result(updated.after)

    async def delete(self, command: Command[client.GroupRef]) -> server.Empty:
        """`group:delete` (admins): every gateway drops the room after the event."""
        group_id, actor = command.payload.group_id, command.actor.user_id
        await self._store.delete(group_id, actor)
        await self._deleted(group_id, actor)
        return server.Empty()

    async def member_add(self, command: Command[client.GroupMemberAdd]) -> server.GroupResult:
        """`group:member:add` (admins)."""
        payload, actor = command.payload, command.actor.user_id
        member = Member(user_id=payload.user_id, role=payload.role, joined_at=self._clock.now())
        after = await self._store.add_member(payload.group_id, actor, member)
        await self._membership_changed(payload.group_id, member.user_id)
        event = server.GroupMemberAdded(
            group_id=payload.group_id, user_id=member.user_id, added_by=actor, role=member.role
        )
        # The new member's sockets join and get the event on its own subject; the
        # existing members get it on the room.
        await self._publisher.to_user(member.user_id, MEMBER_ADDED, event, join=[payload.group_id])
        await self._publisher.to_room(
            payload.group_id, MEMBER_ADDED, event, skip_user=member.user_id
        )
        return _result(after)

    async def member_remove(
        self, command: Command[client.GroupMemberRemove]
    ) -> server.GroupResult | server.Empty:
        """`group:member:remove`: an admin removes someone, or a member leaves.

        Acks the group (as the actor now sees it) after removing someone else, `{}`
        after leaving.
        """
        payload, actor = command.payload, command.actor.user_id
        removed = await self._store.remove_member(payload.group_id, actor, payload.user_id)
        if removed.kind is Removal.DISBANDED:
            await self._deleted(payload.group_id, actor)
            return server.Empty()
        await self._membership_changed(payload.group_id, payload.user_id)
        event = server.GroupMemberRemoved(
            group_id=payload.group_id, user_id=payload.user_id, removed_by=actor
        )
        await self._publisher.to_room(
            payload.group_id, MEMBER_REMOVED, event, skip_user=payload.user_id
        )
        # The removed user's sockets get the event and leave the room in one delivery.
        await self._publisher.to_user(
            payload.user_id, MEMBER_REMOVED, event, leave=[payload.group_id]
        )
        if removed.kind is Removal.LEFT:
            return server.Empty()
        return _result(removed.after)

    async def member_role(self, command: Command[client.GroupMemberRole]) -> server.GroupResult:
        """`group:member:role` (admins); giving the role a member already has is a no-op."""
        payload, actor = command.payload, command.actor.user_id
        outcome = await self._store.set_role(payload.group_id, actor, payload.user_id, payload.role)
        if outcome.changed:
            await self._membership_changed(payload.group_id, payload.user_id)
            await self._publisher.to_room(
                payload.group_id,
                MEMBER_ROLE_CHANGED,
                server.GroupMemberRoleChanged(
                    group_id=payload.group_id,
                    user_id=payload.user_id,
                    role=payload.role,
                    changed_by=actor,
                ),
            )
        return _result(outcome.after)

    async def list_groups(self, command: Command[client.GroupsList]) -> server.GroupsResult:
        """`groups:list`: the actor's groups, newest first."""
        mine = await self._store.groups_of(command.actor.user_id)
        return server.GroupsResult(groups=[domain.view(group, role) for group, role in mine])

    async def get(self, command: Command[client.GroupRef]) -> server.GroupResult:
        """`group:get` (members)."""
        return _result(await self._store.access(command.payload.group_id, command.actor.user_id))

    # --- internal queries ---------------------------------------------------------

    async def membership(self, command: Command[bus.MembershipQuery]) -> bus.Membership:
        """`cmd.groups.membership`: any service may ask about any user."""
        access = await self._store.access(command.payload.group_id, command.payload.user_id)
        group: GroupRecord | None = access.group
        if group is None:
            return bus.Membership(exists=False)
        return bus.Membership(exists=True, member_count=group.member_count, role=access.role)

    async def members(self, command: Command[bus.MembersQuery]) -> bus.Members:
        """`cmd.groups.members`: every member id, for a member of the group."""
        access, user_ids = await self._store.members(
            command.payload.group_id, command.actor.user_id
        )
        domain.require_member(access)
        return bus.Members(user_ids=user_ids)

    async def mine(self, command: Command[bus.Empty]) -> bus.ChatIds:
        """`cmd.groups.mine`: the ids of the actor's groups."""
        return bus.ChatIds(chat_ids=await self._store.group_ids_of(command.actor.user_id))

    # --- helpers ------------------------------------------------------------------

    async def _membership_changed(self, group_id: str, user_id: str | None = None) -> None:
        """Tell membership caches (the messages service's) to forget this entry."""
        await self._publisher.event(
            subjects.GROUP_MEMBERSHIP_CHANGED,
            bus.MembershipChanged(group_id=group_id, user_id=user_id),
        )

    async def _deleted(self, group_id: str, actor: str) -> None:
        await self._membership_changed(group_id)
        await self._publisher.to_room(
            group_id,
            GROUP_DELETED,
            server.GroupDeleted(group_id=group_id, deleted_by=actor),
            close_room=True,
        )
