"""`GroupStore` in an embedded SQLite file: every command is one transaction.

Several workers may share the file: SQLite's write lock serializes their commands.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from chat_contracts.client import Role
from chat_groups import domain
from chat_groups.domain import Access, GroupPatch, GroupRecord, Member, Removal
from chat_groups.store import Removed, RoleChanged, Updated, role_of
from chat_runtime.clock import iso, parse_iso
from chat_runtime.sqlite import SqliteStore

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
    return None if row is None else role_of(row["role"])


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
            return [(_group_row(row), role_of(row["role"])) for row in rows]

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
