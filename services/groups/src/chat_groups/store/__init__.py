"""Group repository: the Protocol the handlers use and its result types.

Two implementations: `chat_groups.store.sqlite` (embedded, the default) and
`chat_groups.store.mongo` (production, a replica set). Both judge every write with the
pure rules of `chat_groups.domain` on the state it is about to change, inside one
transaction per command, so concurrent commands (two workers on one database
included) are judged one after the other: counters stay exact, the last seat of a full
group goes to exactly one add, a group is deleted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from chat_contracts.client import Role
from chat_groups.domain import ADMIN, MEMBER, Access, GroupPatch, GroupRecord, Member, Removal


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
        """Delete the group and every membership (admins only); NOT_FOUND once deleted,
        so of two concurrent deletes exactly one succeeds."""
        ...

    async def add_member(self, group_id: str, actor_id: str, member: Member) -> Access:
        """Add `member` (admins only; LIMIT_EXCEEDED at `limits.MAX_GROUP_MEMBERS`);
        returns the group as the actor sees it after."""
        ...

    async def remove_member(self, group_id: str, actor_id: str, user_id: str) -> Removed:
        """Remove `user_id`, or let the actor leave (see `domain.plan_removal`)."""
        ...

    async def set_role(self, group_id: str, actor_id: str, user_id: str, role: Role) -> RoleChanged:
        """Give `user_id` the `role` (admins only; see `domain.plan_role_change`)."""
        ...


def role_of(value: object) -> Role:
    """A stored role (both stores hand back strings) as the contract's Literal."""
    if value == ADMIN:
        return ADMIN
    if value == MEMBER:
        return MEMBER
    raise ValueError(f"stored role {value!r} is not a role")


__all__ = ["GroupStore", "Removed", "RoleChanged", "Updated", "role_of"]
