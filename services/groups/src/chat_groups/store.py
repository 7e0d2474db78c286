"""Group repository: the Protocol the handlers use, on SQLite and on MongoDB.

Every write judges its preconditions with the pure rules of `chat_groups.domain` on
the state it is about to change: in SQLite inside the command's one transaction, in
MongoDB with single-document guarded updates (see `MongoGroupStore`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chat_contracts import DomainError, ErrorCode, limits
from chat_contracts.client import Role
from chat_groups import domain
from chat_groups.domain import ADMIN, MEMBER, Access, GroupPatch, GroupRecord, Member, Removal
from chat_runtime.clock import iso, parse_iso
from chat_runtime.mongo import Document, connect_mongo
from chat_runtime.sqlite import SqliteStore


class Removed(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of `remove_member`: what happened, and the group as the actor sees it
    afterwards (`group` None when disbanded, `role` None when the actor left)."""

    kind: Removal
    after: Access


class RoleChanged(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of `set_role`: `changed` False = the target already had the role."""

    changed: bool
    after: Access


class Updated(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of `update`: the effective patch (maybe empty) and the group after it."""

    patch: GroupPatch
    after: Access


class GroupStore(Protocol):
    """What the group handlers need from storage. Writes raise `DomainError` when a
    rule refuses them, and then change nothing."""

    async def open(self) -> None:
        """Connect and create the schema or indexes (idempotent)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...

    async def create(self, group: GroupRecord, members: Sequence[Member]) -> None:
        """Store a new group and its initial members (`group.member_count` of them)."""
        ...

    async def access(self, group_id: str, user_id: str) -> Access:
        """The group and `user_id`'s role in it."""
        ...

    async def members(self, group_id: str, viewer_id: str) -> tuple[Access, list[str]]:
        """`viewer_id`'s access and, only if a member, every member id (by join time)."""
        ...

    async def groups_of(self, user_id: str) -> list[tuple[GroupRecord, Role]]:
        """The groups `user_id` belongs to with its role in each, newest first."""
        ...

    async def group_ids_of(self, user_id: str) -> list[str]:
        """The ids of the groups `user_id` belongs to, newest first."""
        ...

    async def update(self, group_id: str, actor_id: str, requested: GroupPatch) -> Updated:
        """Apply the fields of `requested` that differ (admins only)."""
        ...

    async def delete(self, group_id: str, actor_id: str) -> None:
        """Delete the group and every membership (admins only)."""
        ...

    async def add_member(self, group_id: str, actor_id: str, member: Member) -> Access:
        """Add `member` (admins only); returns the group as the actor sees it after."""
        ...

    async def remove_member(self, group_id: str, actor_id: str, user_id: str) -> Removed:
        """Remove `user_id`, or let the actor leave (see `domain.plan_removal`)."""
        ...

    async def set_role(self, group_id: str, actor_id: str, user_id: str, role: Role) -> RoleChanged:
        """Give `user_id` the `role` (admins only; see `domain.plan_role_change`)."""
        ...


def _role(value: object) -> Role:
    # Both stores hand back strings; narrow them to the contract's Literal.
    if value == ADMIN:
        return ADMIN
    if value == MEMBER:
        return MEMBER
    raise ValueError(f"stored role {value!r} is not a role")


# --- SQLite -----------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT,
    avatar_url   TEXT,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    member_count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_members (
    group_id  TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    role      TEXT NOT NULL CHECK (role IN ('ADMIN', 'MEMBER')),
    joined_at TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_by_user ON group_members (user_id, group_id);
"""

_GROUP_COLUMNS = "id, name, description, avatar_url, created_by, created_at, member_count"


def _group_row(row: sqlite3.Row) -> GroupRecord:
    return GroupRecord(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        avatar_url=row["avatar_url"],
        created_by=row["created_by"],
        created_at=parse_iso(row["created_at"]),
        member_count=row["member_count"],
    )


def _sql_group(conn: sqlite3.Connection, group_id: str) -> GroupRecord | None:
    row = conn.execute(f"SELECT {_GROUP_COLUMNS} FROM groups WHERE id = ?", (group_id,)).fetchone()
    return None if row is None else _group_row(row)


def _sql_role(conn: sqlite3.Connection, group_id: str, user_id: str) -> Role | None:
    row = conn.execute(
        "SELECT role FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id)
    ).fetchone()
    return None if row is None else _role(row["role"])


def _sql_access(conn: sqlite3.Connection, group_id: str, user_id: str) -> Access:
    return Access(group=_sql_group(conn, group_id), role=_sql_role(conn, group_id, user_id))


def _sql_admin_count(conn: sqlite3.Connection, group_id: str) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM group_members WHERE group_id = ? AND role = 'ADMIN'", (group_id,)
    ).fetchone()
    return int(row[0])


def _sql_bump(conn: sqlite3.Connection, group_id: str, delta: int) -> None:
    conn.execute(
        "UPDATE groups SET member_count = member_count + ? WHERE id = ?", (delta, group_id)
    )


class SqliteGroupStore(SqliteStore):
    """Groups in an embedded SQLite file; every command is one transaction."""

    SCHEMA = SCHEMA

    async def create(self, group: GroupRecord, members: Sequence[Member]) -> None:
        """Store a new group and its initial members."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO groups ({_GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    group.id,
                    group.name,
                    group.description,
                    group.avatar_url,
                    group.created_by,
                    iso(group.created_at),
                    len(members),
                ),
            )
            conn.executemany(
                "INSERT INTO group_members (group_id, user_id, role, joined_at)"
                " VALUES (?, ?, ?, ?)",
                [(group.id, m.user_id, m.role, iso(m.joined_at)) for m in members],
            )

        await self._db.write(work)

    async def access(self, group_id: str, user_id: str) -> Access:
        """The group and `user_id`'s role in it."""
        return await self._db.read(lambda conn: _sql_access(conn, group_id, user_id))

    async def members(self, group_id: str, viewer_id: str) -> tuple[Access, list[str]]:
        """`viewer_id`'s access and, only if a member, every member id."""

        def work(conn: sqlite3.Connection) -> tuple[Access, list[str]]:
            access = _sql_access(conn, group_id, viewer_id)
            if access.role is None:
                return access, []
            rows = conn.execute(
                "SELECT user_id FROM group_members WHERE group_id = ? ORDER BY joined_at, user_id",
                (group_id,),
            ).fetchall()
            return access, [row["user_id"] for row in rows]

        return await self._db.read(work)

    async def groups_of(self, user_id: str) -> list[tuple[GroupRecord, Role]]:
        """The groups of `user_id` with its role in each, newest first."""

        def work(conn: sqlite3.Connection) -> list[tuple[GroupRecord, Role]]:
            rows = conn.execute(
                "SELECT g.id, g.name, g.description, g.avatar_url, g.created_by,"
                " g.created_at, g.member_count, m.role"
                " FROM group_members m JOIN groups g ON g.id = m.group_id"
                " WHERE m.user_id = ? ORDER BY g.created_at DESC, g.id DESC",
                (user_id,),
            ).fetchall()
            return [(_group_row(row), _role(row["role"])) for row in rows]

        return await self._db.read(work)

    async def group_ids_of(self, user_id: str) -> list[str]:
        """The ids of the groups of `user_id`, newest first."""

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT g.id FROM group_members m JOIN groups g ON g.id = m.group_id"
                " WHERE m.user_id = ? ORDER BY g.created_at DESC, g.id DESC",
                (user_id,),
            ).fetchall()
            return [row["id"] for row in rows]

        return await self._db.read(work)

    async def update(self, group_id: str, actor_id: str, requested: GroupPatch) -> Updated:
        """Apply the fields of `requested` that differ (admins only)."""

        def work(conn: sqlite3.Connection) -> Updated:
            access = _sql_access(conn, group_id, actor_id)
            group, patch = domain.plan_update(access, requested)
            if patch.empty:
                return Updated(patch=patch, after=access)
            after = domain.apply_patch(group, patch)
            conn.execute(
                "UPDATE groups SET name = ?, description = ?, avatar_url = ? WHERE id = ?",
                (after.name, after.description, after.avatar_url, group_id),
            )
            return Updated(patch=patch, after=Access(group=after, role=access.role))

        return await self._db.write(work)

    async def delete(self, group_id: str, actor_id: str) -> None:
        """Delete the group; its memberships go with it (ON DELETE CASCADE)."""

        def work(conn: sqlite3.Connection) -> None:
            domain.require_admin(_sql_access(conn, group_id, actor_id))
            conn.execute("DELETE FROM groups WHERE id = ?", (group_id,))

        await self._db.write(work)

    async def add_member(self, group_id: str, actor_id: str, member: Member) -> Access:
        """Add `member` (admins only)."""

        def work(conn: sqlite3.Connection) -> Access:
            access = _sql_access(conn, group_id, actor_id)
            group = domain.check_add(access, _sql_role(conn, group_id, member.user_id))
            conn.execute(
                "INSERT INTO group_members (group_id, user_id, role, joined_at)"
                " VALUES (?, ?, ?, ?)",
                (group_id, member.user_id, member.role, iso(member.joined_at)),
            )
            _sql_bump(conn, group_id, +1)
            after = msgspec.structs.replace(group, member_count=group.member_count + 1)
            return Access(group=after, role=access.role)

        return await self._db.write(work)

    async def remove_member(self, group_id: str, actor_id: str, user_id: str) -> Removed:
        """Remove `user_id`, or let the actor leave; the sole member leaving deletes it."""

        def work(conn: sqlite3.Connection) -> Removed:
            access = _sql_access(conn, group_id, actor_id)
            target_role = _sql_role(conn, group_id, user_id)
            kind = domain.plan_removal(
                access, actor_id, user_id, target_role, _sql_admin_count(conn, group_id)
            )
            if kind is Removal.DISBANDED:
                conn.execute("DELETE FROM groups WHERE id = ?", (group_id,))
                return Removed(kind=kind, after=Access(group=None, role=None))
            conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                (group_id, user_id),
            )
            _sql_bump(conn, group_id, -1)
            group = domain.require_group(access.group)
            after = msgspec.structs.replace(group, member_count=group.member_count - 1)
            role = None if kind is Removal.LEFT else access.role
            return Removed(kind=kind, after=Access(group=after, role=role))

        return await self._db.write(work)

    async def set_role(self, group_id: str, actor_id: str, user_id: str, role: Role) -> RoleChanged:
        """Give `user_id` the `role` (admins only)."""

        def work(conn: sqlite3.Connection) -> RoleChanged:
            access = _sql_access(conn, group_id, actor_id)
            changed = domain.plan_role_change(
                access,
                actor_id,
                user_id,
                _sql_role(conn, group_id, user_id),
                role,
                _sql_admin_count(conn, group_id),
            )
            if not changed:
                return RoleChanged(changed=False, after=access)
            conn.execute(
                "UPDATE group_members SET role = ? WHERE group_id = ? AND user_id = ?",
                (role, group_id, user_id),
            )
            my_role = role if user_id == actor_id else access.role
            return RoleChanged(changed=True, after=Access(group=access.group, role=my_role))

        return await self._db.write(work)


# --- MongoDB ----------------------------------------------------------------------

#: How often a guarded MongoDB write is re-planned after losing a race.
_ATTEMPTS = 5


def _mongo_group(doc: Document) -> GroupRecord:
    return GroupRecord(
        id=doc["_id"],
        name=doc["name"],
        description=doc.get("description"),
        avatar_url=doc.get("avatar_url"),
        created_by=doc["created_by"],
        created_at=doc["created_at"],
        member_count=doc["member_count"],
    )


def _changed() -> DomainError:
    return DomainError(ErrorCode.CONFLICT, "the group changed while this was being done; try again")


class MongoGroupStore:
    """Groups in MongoDB: a `groups` collection and a `group_members` collection.

    A group document keeps `member_count` and `admin_count`, changed with `$inc`. Without
    a replica set MongoDB has no multi-document transaction, so a command that touches a
    group and its memberships is a sequence of single-document atomic writes instead:
    the group document's counters are updated with a guard (`member_count < limit`,
    `admin_count > 1`) that re-checks the rule at the moment of the write, membership
    documents are changed with a filter on their expected role, and a step that loses a
    race is undone and the command re-planned. The order of the steps keeps
    `admin_count` at or below the real number of admins, so the last-admin rule errs on
    the strict side; a crash between two steps can leave a counter off by one, never an
    orphan visible to users (reads skip memberships of groups that no longer exist).
    """

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

    async def _roles(self, group_id: str, user_ids: Sequence[str]) -> dict[str, Role]:
        cursor = self._members.find(
            {"group_id": group_id, "user_id": {"$in": list(user_ids)}},
            projection={"user_id": True, "role": True, "_id": False},
        )
        return {doc["user_id"]: _role(doc["role"]) async for doc in cursor}

    async def _state(
        self, group_id: str, actor_id: str, other_id: str
    ) -> tuple[Document | None, Access, Role | None]:
        # One read of the group and one of both roles: the inputs of every write rule.
        doc = await self._groups.find_one({"_id": group_id})
        roles = await self._roles(group_id, [actor_id, other_id])
        group = None if doc is None else _mongo_group(doc)
        return doc, Access(group=group, role=roles.get(actor_id)), roles.get(other_id)

    async def create(self, group: GroupRecord, members: Sequence[Member]) -> None:
        """Store a new group and its initial members."""
        admins = sum(1 for m in members if m.role == ADMIN)
        # The group first: if the members' insert then fails, nobody can see the group.
        await self._groups.insert_one(
            {
                "_id": group.id,
                "name": group.name,
                "description": group.description,
                "avatar_url": group.avatar_url,
                "created_by": group.created_by,
                "created_at": group.created_at,
                "member_count": len(members),
                "admin_count": admins,
            }
        )
        try:
            await self._members.insert_many(
                [
                    {
                        "group_id": group.id,
                        "user_id": m.user_id,
                        "role": m.role,
                        "joined_at": m.joined_at,
                    }
                    for m in members
                ],
                ordered=True,
            )
        except Exception:
            # Undo the half-made group so that a retry starts clean.
            await self._members.delete_many({"group_id": group.id})
            await self._groups.delete_one({"_id": group.id})
            raise

    async def access(self, group_id: str, user_id: str) -> Access:
        """The group and `user_id`'s role in it."""
        doc = await self._groups.find_one({"_id": group_id})
        if doc is None:
            return Access(group=None, role=None)
        member = await self._members.find_one(
            {"group_id": group_id, "user_id": user_id}, projection={"role": True}
        )
        role = None if member is None else _role(member["role"])
        return Access(group=_mongo_group(doc), role=role)

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
        roles = {doc["group_id"]: _role(doc["role"]) async for doc in cursor}
        if not roles:
            return []
        groups = self._groups.find(
            {"_id": {"$in": list(roles)}}, sort=[("created_at", DESCENDING), ("_id", DESCENDING)]
        )
        return [(_mongo_group(doc), roles[doc["_id"]]) async for doc in groups]

    async def group_ids_of(self, user_id: str) -> list[str]:
        """The ids of the groups of `user_id`, newest first."""
        cursor = self._members.find(
            {"user_id": user_id}, projection={"group_id": True, "_id": False}
        )
        ids = [doc["group_id"] async for doc in cursor]
        if not ids:
            return []
        # Through `groups`, so that memberships of a group deleted half-way are skipped.
        groups = self._groups.find(
            {"_id": {"$in": ids}},
            projection={"_id": True},
            sort=[("created_at", DESCENDING), ("_id", DESCENDING)],
        )
        return [doc["_id"] async for doc in groups]

    async def update(self, group_id: str, actor_id: str, requested: GroupPatch) -> Updated:
        """Apply the fields of `requested` that differ (admins only)."""
        access = await self.access(group_id, actor_id)
        _, patch = domain.plan_update(access, requested)
        if patch.empty:
            return Updated(patch=patch, after=access)
        changes: dict[str, Any] = {
            field: value
            for field in ("name", "description", "avatar_url")
            if not isinstance(value := getattr(patch, field), msgspec.UnsetType)
        }
        doc = await self._groups.find_one_and_update(
            {"_id": group_id}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
        group = domain.require_group(None if doc is None else _mongo_group(doc))
        return Updated(patch=patch, after=Access(group=group, role=access.role))

    async def delete(self, group_id: str, actor_id: str) -> None:
        """Delete the group, then its memberships."""
        domain.require_admin(await self.access(group_id, actor_id))
        # The group first: from here on it is NOT_FOUND, and reads skip leftover
        # memberships until `delete_many` (a separate write: no transaction) removes them.
        await self._groups.delete_one({"_id": group_id})
        await self._members.delete_many({"group_id": group_id})

    async def add_member(self, group_id: str, actor_id: str, member: Member) -> Access:
        """Add `member` (admins only), counted against the limit by a guarded `$inc`."""
        _, access, target_role = await self._state(group_id, actor_id, member.user_id)
        domain.check_add(access, target_role)
        try:
            inserted = await self._members.insert_one(
                {
                    "group_id": group_id,
                    "user_id": member.user_id,
                    "role": member.role,
                    "joined_at": member.joined_at,
                }
            )
        except DuplicateKeyError:
            # Added by someone else since we looked.
            raise DomainError(
                ErrorCode.CONFLICT, "already a member of this group", field="userId"
            ) from None
        # Membership first, count second: the guarded $inc is what enforces the limit,
        # and `admin_count` never runs ahead of the admins that really exist.
        doc = await self._groups.find_one_and_update(
            {"_id": group_id, "member_count": {"$lt": limits.MAX_GROUP_MEMBERS}},
            {"$inc": {"member_count": 1, "admin_count": 1 if member.role == ADMIN else 0}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            await self._members.delete_one({"_id": inserted.inserted_id})
            if await self._groups.count_documents({"_id": group_id}, limit=1) == 0:
                raise domain.no_such_group()
            raise domain.group_full()
        return Access(group=_mongo_group(doc), role=access.role)

    async def remove_member(self, group_id: str, actor_id: str, user_id: str) -> Removed:
        """Remove `user_id`, or let the actor leave; the sole member leaving deletes it."""
        for _ in range(_ATTEMPTS):
            doc, access, target_role = await self._state(group_id, actor_id, user_id)
            admin_count = 0 if doc is None else int(doc.get("admin_count", 0))
            kind = domain.plan_removal(access, actor_id, user_id, target_role, admin_count)
            if kind is Removal.DISBANDED:
                # Only while the actor is still the sole member; else re-plan.
                gone = await self._groups.delete_one({"_id": group_id, "member_count": 1})
                if gone.deleted_count == 0:
                    continue
                await self._members.delete_many({"group_id": group_id})
                return Removed(kind=kind, after=Access(group=None, role=None))
            was_admin = target_role == ADMIN
            guard: dict[str, Any] = {"_id": group_id, "member_count": {"$gt": 1}}
            if was_admin:
                guard["admin_count"] = {"$gt": 1}
            # Counters first, under the guard that re-checks the last-admin rule now.
            after = await self._groups.find_one_and_update(
                guard,
                {"$inc": {"member_count": -1, "admin_count": -1 if was_admin else 0}},
                return_document=ReturnDocument.AFTER,
            )
            if after is None:
                continue
            dropped = await self._members.delete_one(
                {"group_id": group_id, "user_id": user_id, "role": target_role}
            )
            if dropped.deleted_count == 0:
                # Removed or re-roled by someone else meanwhile: give the counts back.
                await self._groups.update_one(
                    {"_id": group_id},
                    {"$inc": {"member_count": 1, "admin_count": 1 if was_admin else 0}},
                )
                continue
            role = None if kind is Removal.LEFT else access.role
            return Removed(kind=kind, after=Access(group=_mongo_group(after), role=role))
        raise _changed()

    async def set_role(self, group_id: str, actor_id: str, user_id: str, role: Role) -> RoleChanged:
        """Give `user_id` the `role` (admins only)."""
        for _ in range(_ATTEMPTS):
            doc, access, target_role = await self._state(group_id, actor_id, user_id)
            admin_count = 0 if doc is None else int(doc.get("admin_count", 0))
            if not domain.plan_role_change(
                access, actor_id, user_id, target_role, role, admin_count
            ):
                return RoleChanged(changed=False, after=access)
            old_role = MEMBER if role == ADMIN else ADMIN
            member_filter = {"group_id": group_id, "user_id": user_id, "role": old_role}
            if role == MEMBER:
                # Demotion: count first, guarded so that one admin always remains.
                after = await self._groups.find_one_and_update(
                    {"_id": group_id, "admin_count": {"$gt": 1}},
                    {"$inc": {"admin_count": -1}},
                    return_document=ReturnDocument.AFTER,
                )
                if after is None:
                    continue
                changed = await self._members.update_one(member_filter, {"$set": {"role": role}})
                if changed.modified_count == 0:
                    await self._groups.update_one({"_id": group_id}, {"$inc": {"admin_count": 1}})
                    continue
            else:
                # Promotion: the role first, so the count never exceeds the real admins.
                changed = await self._members.update_one(member_filter, {"$set": {"role": role}})
                if changed.modified_count == 0:
                    continue
                after = await self._groups.find_one_and_update(
                    {"_id": group_id},
                    {"$inc": {"admin_count": 1}},
                    return_document=ReturnDocument.AFTER,
                )
                if after is None:
                    raise domain.no_such_group()
            my_role = role if user_id == actor_id else access.role
            return RoleChanged(changed=True, after=Access(group=_mongo_group(after), role=my_role))
        raise _changed()
