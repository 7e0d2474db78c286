"""`GroupStore` on MongoDB (a replica set): every change of memberships is one transaction.

Collections: `groups` (one document per group, with `member_count` and `admin_count`)
and `group_members` (one document per membership, unique on group and user).

Each command that changes a group reads the group and the roles it needs, judges them
with the pure rules of `chat_groups.domain`, and writes the memberships *and* the group
document (its counters, or its deletion) in one `with_transaction`
(`chat_runtime.mongo.in_transaction`). Because every such transaction writes the group
document, two of them on one group conflict (WriteConflict, labelled
TransientTransactionError): MongoDB lets one commit and pymongo runs the other again on
the new state. So the counters are always the number of memberships, the last seat of a
full group goes to exactly one add, a losing add is never visible, and a group is
deleted once (the second delete reads no group: NOT_FOUND).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from chat_contracts import DomainError, ErrorCode
from chat_contracts.client import Role
from chat_groups import domain
from chat_groups.domain import ADMIN, Access, GroupPatch, GroupRecord, Member, Removal
from chat_groups.store import Removed, RoleChanged, Updated, role_of
from chat_runtime.mongo import Document, connect_mongo, in_transaction


def _group(doc: Document) -> GroupRecord:
    return GroupRecord(
        id=doc["_id"],
        name=doc["name"],
        description=doc.get("description"),
        avatar_url=doc.get("avatar_url"),
        created_by=doc["created_by"],
        created_at=doc["created_at"],
        member_count=doc["member_count"],
    )


def _admin_delta(role: Role | None) -> int:
    return 1 if role == ADMIN else 0


class State(msgspec.Struct, frozen=True):
    """What every write rule reads: the group document, the actor's access, the
    target's role (all from one transaction's snapshot)."""

    doc: Document | None
    access: Access
    target_role: Role | None

    @property
    def admin_count(self) -> int:
        return 0 if self.doc is None else int(self.doc.get("admin_count", 0))


class MongoGroupStore:
    """Groups in MongoDB; see the module docstring for how writes stay consistent."""

    def __init__(self, url: str, db_name: str) -> None:
        self._client, db = connect_mongo(url, db_name)
        self._groups = db["groups"]
        self._members = db["group_members"]

    async def open(self) -> None:
        """Create the indexes (idempotent)."""
        await self._members.create_index(
            [("group_id", ASCENDING), ("user_id", ASCENDING)], unique=True, name="group_user"
        )
        await self._members.create_index(
            [("user_id", ASCENDING), ("group_id", ASCENDING)], name="by_user"
        )

    async def close(self) -> None:
        """Close the client."""
        await self._client.close()

    async def _state(
        self, session: AsyncClientSession, group_id: str, actor_id: str, other_id: str
    ) -> State:
        doc = await self._groups.find_one({"_id": group_id}, session=session)
        cursor = self._members.find(
            {"group_id": group_id, "user_id": {"$in": [actor_id, other_id]}},
            projection={"user_id": True, "role": True, "_id": False},
            session=session,
        )
        roles = {m["user_id"]: role_of(m["role"]) async for m in cursor}
        group = None if doc is None else _group(doc)
        return State(doc, Access(group=group, role=roles.get(actor_id)), roles.get(other_id))

    async def _bump(
        self, session: AsyncClientSession, group_id: str, members: int, admins: int
    ) -> GroupRecord:
        # The write that makes concurrent changes of one group conflict (see the module).
        doc = await self._groups.find_one_and_update(
            {"_id": group_id},
            {"$inc": {"member_count": members, "admin_count": admins}},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        return domain.require_group(None if doc is None else _group(doc))

    async def _drop(self, session: AsyncClientSession, group_id: str) -> None:
        await self._groups.delete_one({"_id": group_id}, session=session)
        await self._members.delete_many({"group_id": group_id}, session=session)

    async def create(self, group: GroupRecord, members: Sequence[Member]) -> None:
        """Store a new group and its initial members, together or not at all."""
        group_doc = {
            "_id": group.id,
            "name": group.name,
            "description": group.description,
            "avatar_url": group.avatar_url,
            "created_by": group.created_by,
            "created_at": group.created_at,
            "member_count": len(members),
            "admin_count": sum(_admin_delta(m.role) for m in members),
        }
        member_docs = [
            {"group_id": group.id, "user_id": m.user_id, "role": m.role, "joined_at": m.joined_at}
            for m in members
        ]

        async def work(session: AsyncClientSession) -> None:
            await self._groups.insert_one(dict(group_doc), session=session)
            # Copies: insert_* adds `_id` to the documents it is given, and a retried
            # transaction must insert fresh ones.
            await self._members.insert_many(
                [dict(d) for d in member_docs], ordered=True, session=session
            )

        await in_transaction(self._client, work)

    async def access(self, group_id: str, user_id: str) -> Access:
        """The group and `user_id`'s role in it."""
        doc = await self._groups.find_one({"_id": group_id})
        if doc is None:
            return Access(group=None, role=None)
        member = await self._members.find_one(
            {"group_id": group_id, "user_id": user_id}, projection={"role": True}
        )
        role = None if member is None else role_of(member["role"])
        return Access(group=_group(doc), role=role)

    async def members(self, group_id: str, viewer_id: str) -> tuple[Access, list[str]]:
        """`viewer_id`'s access and, only if a member, every member id."""
        access = await self.access(group_id, viewer_id)
        if access.role is None:
            return access, []
        cursor = self._members.find(
            {"group_id": group_id},
            projection={"user_id": True, "_id": False},
            sort=[("joined_at", ASCENDING), ("user_id", ASCENDING)],
        )
        return access, [doc["user_id"] async for doc in cursor]

    async def groups_of(self, user_id: str) -> list[tuple[GroupRecord, Role]]:
        """The groups of `user_id` with its role in each, newest first."""
        cursor = self._members.find(
            {"user_id": user_id}, projection={"group_id": True, "role": True, "_id": False}
        )
        roles = {doc["group_id"]: role_of(doc["role"]) async for doc in cursor}
        if not roles:
            return []
        groups = self._groups.find(
            {"_id": {"$in": list(roles)}}, sort=[("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        return [(_group(doc), roles[doc["_id"]]) async for doc in groups]

    async def group_ids_of(self, user_id: str) -> list[str]:
        """The ids of the groups of `user_id`, newest first."""
        cursor = self._members.find(
            {"user_id": user_id}, projection={"group_id": True, "_id": False}
        )
        ids = [doc["group_id"] async for doc in cursor]
        if not ids:
            return []
        groups = self._groups.find(
            {"_id": {"$in": ids}},
            projection={"_id": True},
            sort=[("created_at", DESCENDING), ("_id", DESCENDING)],
        )
        return [doc["_id"] async for doc in groups]

    async def update(self, group_id: str, actor_id: str, requested: GroupPatch) -> Updated:
        """Apply the fields of `requested` that differ (admins only), judged on the
        roles in the same transaction (a just-demoted admin cannot slip one in)."""

        async def work(session: AsyncClientSession) -> Updated:
            access = (await self._state(session, group_id, actor_id, actor_id)).access
            _, patch = domain.plan_update(access, requested)
            if patch.empty:
                return Updated(patch=patch, after=access)
            changes: dict[str, Any] = {
                field: value
                for field in ("name", "description", "avatar_url")
                if not isinstance(value := getattr(patch, field), msgspec.UnsetType)
            }
            doc = await self._groups.find_one_and_update(
                {"_id": group_id},
                {"$set": changes},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            group = domain.require_group(None if doc is None else _group(doc))
            return Updated(patch=patch, after=Access(group=group, role=access.role))

        return await in_transaction(self._client, work)

    async def delete(self, group_id: str, actor_id: str) -> None:
        """Delete the group and its memberships in one transaction."""

        async def work(session: AsyncClientSession) -> None:
            state = await self._state(session, group_id, actor_id, actor_id)
            domain.require_admin(state.access)
            await self._drop(session, group_id)

        await in_transaction(self._client, work)

    async def add_member(self, group_id: str, actor_id: str, member: Member) -> Access:
        """Add `member` (admins only): the membership and the counters in one transaction."""

        async def work(session: AsyncClientSession) -> Access:
            state = await self._state(session, group_id, actor_id, member.user_id)
            domain.check_add(state.access, state.target_role)
            try:
                await self._members.insert_one(
                    {
                        "group_id": group_id,
                        "user_id": member.user_id,
                        "role": member.role,
                        "joined_at": member.joined_at,
                    },
                    session=session,
                )
            except DuplicateKeyError:
                # Added meanwhile by a transaction committed after our snapshot.
                raise DomainError(
                    ErrorCode.CONFLICT, "already a member of this group", field="userId"
                ) from None
            group = await self._bump(session, group_id, +1, _admin_delta(member.role))
            return Access(group=group, role=state.access.role)

        return await in_transaction(self._client, work)

    async def remove_member(self, group_id: str, actor_id: str, user_id: str) -> Removed:
        """Remove `user_id`, or let the actor leave; the sole member leaving deletes it."""

        async def work(session: AsyncClientSession) -> Removed:
            state = await self._state(session, group_id, actor_id, user_id)
            kind = domain.plan_removal(
                state.access, actor_id, user_id, state.target_role, state.admin_count
            )
            if kind is Removal.DISBANDED:
                await self._drop(session, group_id)
                return Removed(kind=kind, after=Access(group=None, role=None))
            await self._members.delete_one(
                {"group_id": group_id, "user_id": user_id}, session=session
            )
            group = await self._bump(session, group_id, -1, -_admin_delta(state.target_role))
            role = None if kind is Removal.LEFT else state.access.role
            return Removed(kind=kind, after=Access(group=group, role=role))

        return await in_transaction(self._client, work)

    async def set_role(self, group_id: str, actor_id: str, user_id: str, role: Role) -> RoleChanged:
        """Give `user_id` the `role` (admins only): the role and `admin_count` together."""

        async def work(session: AsyncClientSession) -> RoleChanged:
            state = await self._state(session, group_id, actor_id, user_id)
            if not domain.plan_role_change(
                state.access, actor_id, user_id, state.target_role, role, state.admin_count
            ):
                return RoleChanged(changed=False, after=state.access)
            await self._members.update_one(
                {"group_id": group_id, "user_id": user_id},
                {"$set": {"role": role}},
                session=session,
            )
            delta = _admin_delta(role) - _admin_delta(state.target_role)
            group = await self._bump(session, group_id, 0, delta)
            my_role = role if user_id == actor_id else state.access.role
            return RoleChanged(changed=True, after=Access(group=group, role=my_role))

        return await in_transaction(self._client, work)
