"""Pure group rules: who may do what, the last-admin rule, the size limit.

No I/O and no clock: stores call these inside the same transaction (or guarded update)
that writes, so a rule always judges the state the write changes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

import msgspec

from chat_contracts import DomainError, ErrorCode, ids, limits, server
from chat_contracts.client import Role
from chat_runtime.clock import iso

#: Group ids carry their own prefix so they never collide with DM conversations ("c_").
GROUP_ID_PREFIX = ids.GROUP_PREFIX
ADMIN: Role = "ADMIN"
MEMBER: Role = "MEMBER"


class GroupRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A stored group, independent of who looks at it."""

    id: str
    name: str
    created_by: str
    created_at: datetime
    member_count: int
    description: str | None = None
    avatar_url: str | None = None


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One membership row."""

    user_id: str
    role: Role
    joined_at: datetime


class Access(msgspec.Struct, frozen=True, kw_only=True):
    """A group as one user stands towards it: `group` None = no such group,
    `role` None = not a member."""

    group: GroupRecord | None
    role: Role | None


class GroupPatch(msgspec.Struct, frozen=True, kw_only=True):
    """Changes to a group's profile. UNSET = untouched; None = cleared (description and
    avatar only: a name is never cleared)."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    avatar_url: str | msgspec.UnsetType | None = msgspec.UNSET

    @property
    def empty(self) -> bool:
        """True when the patch changes nothing."""
        return all(
            isinstance(v, msgspec.UnsetType) for v in (self.name, self.description, self.avatar_url)
        )


class Removal(enum.Enum):
    """What `member_remove` turns out to be."""

    #: An admin removed someone else.
    REMOVED = "removed"
    #: A member removed itself.
    LEFT = "left"
    #: The sole member left: the group is deleted with it.
    DISBANDED = "disbanded"


# --- names and profile fields -----------------------------------------------------


def clean_name(name: str) -> str:
    """A group name without surrounding blanks; an all-blank name is refused."""
    cleaned = name.strip()
    if not cleaned:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "the group name is blank", field="name")
    return cleaned


def _optional(value: str | None) -> str | None:
    # An empty string is how a client clears a description or an avatar (null means
    # "not given" in group:update), so both store as None.
    return value or None


def plan_create(creator_id: str, member_ids: Iterable[str]) -> list[str]:
    """The other initial members: `member_ids` deduplicated in order, without the creator.

    Refuses a group whose members, creator included, exceed the size limit.
    """
    others = list(dict.fromkeys(uid for uid in member_ids if uid != creator_id))
    check_size(1 + len(others), field="memberIds")
    return others


def new_group(
    group_id: str,
    creator_id: str,
    *,
    name: str,
    description: str | None,
    avatar_url: str | None,
    member_count: int,
    at: datetime,
) -> GroupRecord:
    """A group about to be created by `creator_id` at `at`."""
    return GroupRecord(
        id=group_id,
        name=clean_name(name),
        created_by=creator_id,
        created_at=at,
        member_count=member_count,
        description=_optional(description),
        avatar_url=_optional(avatar_url),
    )


def requested_patch(
    name: str | None, description: str | None, avatar_url: str | None
) -> GroupPatch:
    """The patch a `group:update` asks for (None = not given, "" = clear)."""
    return GroupPatch(
        name=msgspec.UNSET if name is None else clean_name(name),
        description=msgspec.UNSET if description is None else _optional(description),
        avatar_url=msgspec.UNSET if avatar_url is None else _optional(avatar_url),
    )


def plan_update(access: Access, requested: GroupPatch) -> tuple[GroupRecord, GroupPatch]:
    """Check an update and keep only the fields that really change.

    Returns the group as it is now and the effective patch (maybe empty: a no-op).
    """
    group = require_admin(access)
    changes: dict[str, str | None] = {}
    for field in ("name", "description", "avatar_url"):
        wanted = getattr(requested, field)
        if not isinstance(wanted, msgspec.UnsetType) and wanted != getattr(group, field):
            changes[field] = wanted
    return group, msgspec.convert(changes, GroupPatch)


def apply_patch(group: GroupRecord, patch: GroupPatch) -> GroupRecord:
    """`group` with `patch` applied."""
    changes = {
        field: value
        for field in ("name", "description", "avatar_url")
        if not isinstance(value := getattr(patch, field), msgspec.UnsetType)
    }
    return msgspec.structs.replace(group, **changes)


# --- permissions ------------------------------------------------------------------


def no_such_group() -> DomainError:
    """The refusal for a group id that names no group."""
    return DomainError(ErrorCode.NOT_FOUND, "no such group", field="groupId")


def group_full(field: str = "userId") -> DomainError:
    """The refusal for a group that would exceed `MAX_GROUP_MEMBERS`."""
    return DomainError(
        ErrorCode.LIMIT_EXCEEDED,
        f"a group has at most {limits.MAX_GROUP_MEMBERS} members",
        field=field,
    )


def require_group(group: GroupRecord | None) -> GroupRecord:
    """The group, or NOT_FOUND."""
    if group is None:
        raise no_such_group()
    return group


def require_member(access: Access) -> tuple[GroupRecord, Role]:
    """The group and the viewer's role; NOT_FOUND without a group, FORBIDDEN for outsiders."""
    group = require_group(access.group)
    if access.role is None:
        raise DomainError(ErrorCode.FORBIDDEN, "not a member of this group", field="groupId")
    return group, access.role


def require_admin(access: Access) -> GroupRecord:
    """The group, when the viewer is one of its admins; FORBIDDEN otherwise."""
    group, role = require_member(access)
    if role != ADMIN:
        raise DomainError(ErrorCode.FORBIDDEN, "only group admins may do this", field="groupId")
    return group


def check_size(total: int, *, field: str = "userId") -> None:
    """Refuse a group of more than `MAX_GROUP_MEMBERS` members."""
    if total > limits.MAX_GROUP_MEMBERS:
        raise group_full(field)


def check_add(access: Access, target_role: Role | None) -> GroupRecord:
    """An admin adds a user who is not yet a member, into a group that has room."""
    group = require_admin(access)
    if target_role is not None:
        raise DomainError(ErrorCode.CONFLICT, "already a member of this group", field="userId")
    check_size(group.member_count + 1)
    return group


def plan_removal(
    access: Access,
    actor_id: str,
    target_id: str,
    target_role: Role | None,
    admin_count: int,
) -> Removal:
    """Decide what removing `target_id` means, or refuse it.

    Anyone may leave; only admins remove others. The last admin may not leave while
    others remain (they would be left without anyone to manage the group); the sole
    member leaving deletes the group.
    """
    group, actor_role = require_member(access)
    if target_id == actor_id:
        if group.member_count <= 1:
            return Removal.DISBANDED
        if actor_role == ADMIN and admin_count <= 1:
            raise DomainError(
                ErrorCode.CONFLICT,
                "the last admin cannot leave while other members remain; "
                "promote another admin first",
                field="userId",
            )
        return Removal.LEFT
    if actor_role != ADMIN:
        raise DomainError(
            ErrorCode.FORBIDDEN, "only group admins may remove other members", field="userId"
        )
    if target_role is None:
        raise DomainError(ErrorCode.NOT_FOUND, "not a member of this group", field="userId")
    return Removal.REMOVED


def plan_role_change(
    access: Access,
    actor_id: str,
    target_id: str,
    target_role: Role | None,
    new_role: Role,
    admin_count: int,
) -> bool:
    """Check a role change; False when the target already has `new_role` (a no-op)."""
    require_admin(access)
    if target_role is None:
        raise DomainError(ErrorCode.NOT_FOUND, "not a member of this group", field="userId")
    if target_role == new_role:
        return False
    if target_id == actor_id and new_role == MEMBER and admin_count <= 1:
        raise DomainError(
            ErrorCode.CONFLICT,
            "the last admin cannot step down; promote another admin first",
            field="role",
        )
    return True


# --- what clients see -------------------------------------------------------------


def view(group: GroupRecord, my_role: Role) -> server.Group:
    """`group` as a member with `my_role` sees it."""
    return server.Group(
        id=group.id,
        name=group.name,
        created_by=group.created_by,
        created_at=iso(group.created_at),
        member_count=group.member_count,
        my_role=my_role,
        description=group.description,
        avatar_url=group.avatar_url,
    )


def updated_event(group_id: str, updated_by: str, patch: GroupPatch) -> server.GroupUpdated:
    """`group:updated` with only the changed fields; a cleared field is sent as ""."""

    def wire(value: str | msgspec.UnsetType | None) -> str | None:
        if isinstance(value, msgspec.UnsetType):
            return None
        return "" if value is None else value

    return server.GroupUpdated(
        group_id=group_id,
        updated_by=updated_by,
        name=wire(patch.name),
        description=wire(patch.description),
        avatar_url=wire(patch.avatar_url),
    )
