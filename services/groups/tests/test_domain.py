"""The pure group rules."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from chat_contracts import DomainError, ErrorCode, limits
from chat_contracts.client import Role
from chat_groups import domain
from chat_groups.domain import ADMIN, MEMBER, Access, GroupPatch, GroupRecord, Removal

AT = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def group(member_count: int = 3, **fields: str | None) -> GroupRecord:
    return GroupRecord(
        id="g_1",
        name=fields.get("name") or "Team",
        created_by="alice",
        created_at=AT,
        member_count=member_count,
        description=fields.get("description"),
        avatar_url=fields.get("avatar_url"),
    )


def access(role: Role | None, member_count: int = 3) -> Access:
    return Access(group=group(member_count), role=role)


def refused(code: ErrorCode) -> pytest.RaisesExc[DomainError]:
    return pytest.raises(DomainError, check=lambda e: e.code is code)


# --- create -----------------------------------------------------------------------


def test_create_dedupes_members_and_drops_the_creator() -> None:
    assert domain.plan_create("alice", ["bob", "alice", "carol", "bob"]) == ["bob", "carol"]


def test_create_allows_exactly_the_limit() -> None:
    others = [f"u{i}" for i in range(limits.MAX_GROUP_MEMBERS - 1)]
    assert len(domain.plan_create("alice", others)) == limits.MAX_GROUP_MEMBERS - 1


def test_create_counts_the_creator_against_the_limit() -> None:
    others = [f"u{i}" for i in range(limits.MAX_GROUP_MEMBERS)]
    with refused(ErrorCode.LIMIT_EXCEEDED) as err:
        domain.plan_create("alice", others)
    assert err.value.field == "memberIds"


def test_create_with_the_creator_listed_is_within_the_limit() -> None:
    others = [f"u{i}" for i in range(limits.MAX_GROUP_MEMBERS - 1)]
    assert len(domain.plan_create("alice", ["alice", *others])) == limits.MAX_GROUP_MEMBERS - 1


def test_new_group_cleans_its_fields() -> None:
    made = domain.new_group(
        "g_1", "alice", name="  Team ", description="", avatar_url=None, member_count=2, at=AT
    )
    assert (made.name, made.description, made.avatar_url) == ("Team", None, None)


def test_blank_name_is_refused() -> None:
    with refused(ErrorCode.VALIDATION_ERROR) as err:
        domain.clean_name("   ")
    assert err.value.field == "name"


# --- permissions ------------------------------------------------------------------


def test_no_group_is_not_found() -> None:
    with refused(ErrorCode.NOT_FOUND):
        domain.require_member(Access(group=None, role=None))


def test_outsider_is_forbidden() -> None:
    with refused(ErrorCode.FORBIDDEN):
        domain.require_member(access(None))


def test_member_is_not_admin() -> None:
    assert domain.require_member(access(MEMBER))[1] == MEMBER
    with refused(ErrorCode.FORBIDDEN):
        domain.require_admin(access(MEMBER))


def test_admin_passes() -> None:
    assert domain.require_admin(access(ADMIN)).id == "g_1"


# --- update -----------------------------------------------------------------------


def test_update_keeps_only_changed_fields() -> None:
    current = Access(group=group(description="old"), role=ADMIN)
    requested = domain.requested_patch("Team", "new", None)
    _, patch = domain.plan_update(current, requested)
    assert patch == GroupPatch(description="new")
    assert domain.apply_patch(group(description="old"), patch).description == "new"


def test_update_to_the_same_values_is_empty() -> None:
    current = Access(group=group(description="d"), role=ADMIN)
    _, patch = domain.plan_update(current, domain.requested_patch(" Team ", "d", ""))
    assert patch.empty


def test_update_clears_with_an_empty_string() -> None:
    current = Access(group=group(avatar_url="http://a"), role=ADMIN)
    _, patch = domain.plan_update(current, domain.requested_patch(None, None, ""))
    assert patch == GroupPatch(avatar_url=None)
    assert domain.apply_patch(group(avatar_url="http://a"), patch).avatar_url is None
    event = domain.updated_event("g_1", "alice", patch)
    assert msgspec.json.decode(msgspec.json.encode(event)) == {
        "groupId": "g_1",
        "updatedBy": "alice",
        "avatarUrl": "",
    }


def test_update_needs_an_admin() -> None:
    with refused(ErrorCode.FORBIDDEN):
        domain.plan_update(access(MEMBER), domain.requested_patch("x", None, None))
    with refused(ErrorCode.FORBIDDEN):
        domain.plan_update(access(None), domain.requested_patch("x", None, None))
    with refused(ErrorCode.NOT_FOUND):
        domain.plan_update(Access(group=None, role=None), domain.requested_patch("x", None, None))


# --- add --------------------------------------------------------------------------


def test_admin_adds_a_newcomer() -> None:
    assert domain.check_add(access(ADMIN), None).id == "g_1"


def test_add_by_a_member_is_forbidden() -> None:
    with refused(ErrorCode.FORBIDDEN):
        domain.check_add(access(MEMBER), None)


def test_add_of_a_member_conflicts() -> None:
    with refused(ErrorCode.CONFLICT):
        domain.check_add(access(ADMIN), MEMBER)


def test_add_to_a_full_group_is_refused() -> None:
    domain.check_add(access(ADMIN, limits.MAX_GROUP_MEMBERS - 1), None)
    with refused(ErrorCode.LIMIT_EXCEEDED):
        domain.check_add(access(ADMIN, limits.MAX_GROUP_MEMBERS), None)


# --- remove -----------------------------------------------------------------------


def test_admin_removes_someone() -> None:
    assert domain.plan_removal(access(ADMIN), "alice", "bob", MEMBER, 1) is Removal.REMOVED


def test_admin_removes_another_admin() -> None:
    assert domain.plan_removal(access(ADMIN), "alice", "bob", ADMIN, 2) is Removal.REMOVED


def test_member_cannot_remove_others() -> None:
    with refused(ErrorCode.FORBIDDEN):
        domain.plan_removal(access(MEMBER), "bob", "carol", MEMBER, 1)


def test_outsider_cannot_remove() -> None:
    with refused(ErrorCode.FORBIDDEN):
        domain.plan_removal(access(None), "mallory", "bob", MEMBER, 1)


def test_removing_a_non_member_is_not_found() -> None:
    with refused(ErrorCode.NOT_FOUND):
        domain.plan_removal(access(ADMIN), "alice", "zed", None, 1)


def test_member_leaves() -> None:
    assert domain.plan_removal(access(MEMBER), "bob", "bob", MEMBER, 1) is Removal.LEFT


def test_one_of_two_admins_leaves() -> None:
    assert domain.plan_removal(access(ADMIN), "alice", "alice", ADMIN, 2) is Removal.LEFT


def test_last_admin_cannot_leave_others_behind() -> None:
    with refused(ErrorCode.CONFLICT) as err:
        domain.plan_removal(access(ADMIN), "alice", "alice", ADMIN, 1)
    assert "promote another admin" in err.value.message


def test_sole_member_leaving_disbands() -> None:
    assert domain.plan_removal(access(ADMIN, 1), "alice", "alice", ADMIN, 1) is Removal.DISBANDED


# --- roles ------------------------------------------------------------------------


def test_admin_promotes() -> None:
    assert domain.plan_role_change(access(ADMIN), "alice", "bob", MEMBER, ADMIN, 1)


def test_same_role_is_a_no_op() -> None:
    assert not domain.plan_role_change(access(ADMIN), "alice", "bob", MEMBER, MEMBER, 1)
    assert not domain.plan_role_change(access(ADMIN), "alice", "alice", ADMIN, ADMIN, 1)


def test_member_cannot_change_roles() -> None:
    with refused(ErrorCode.FORBIDDEN):
        domain.plan_role_change(access(MEMBER), "bob", "bob", MEMBER, ADMIN, 1)


def test_role_of_a_non_member_is_not_found() -> None:
    with refused(ErrorCode.NOT_FOUND):
        domain.plan_role_change(access(ADMIN), "alice", "zed", None, ADMIN, 1)


def test_last_admin_cannot_step_down() -> None:
    with refused(ErrorCode.CONFLICT):
        domain.plan_role_change(access(ADMIN), "alice", "alice", ADMIN, MEMBER, 1)


def test_admin_steps_down_when_another_remains() -> None:
    assert domain.plan_role_change(access(ADMIN), "alice", "alice", ADMIN, MEMBER, 2)


def test_admin_demotes_another_admin() -> None:
    assert domain.plan_role_change(access(ADMIN), "alice", "bob", ADMIN, MEMBER, 2)


# --- views ------------------------------------------------------------------------


def test_view_is_the_wire_group() -> None:
    wire = msgspec.json.decode(msgspec.json.encode(domain.view(group(description="d"), MEMBER)))
    assert wire == {
        "id": "g_1",
        "name": "Team",
        "createdBy": "alice",
        "createdAt": "2026-01-01T12:00:00.123Z",
        "memberCount": 3,
        "myRole": "MEMBER",
        "description": "d",
    }
