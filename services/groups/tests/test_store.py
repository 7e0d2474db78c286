"""The group store contract, run against every implementation (`store` fixture)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import PyMongoError

from chat_contracts import DomainError, ErrorCode, limits
from chat_contracts.client import Role
from chat_groups import domain
from chat_groups.domain import ADMIN, MEMBER, Access, GroupRecord, Member, Removal
from chat_groups.store import GroupStore
from chat_runtime.mongo import APP_NAME, ServerCode, unavailable
from chat_testkit.mongo import fail_point
from chat_testkit.stores import CANCEL_POINTS, cancelled_at

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
_seq = itertools.count()


def refused(code: ErrorCode) -> pytest.RaisesExc[DomainError]:
    return pytest.raises(DomainError, check=lambda e: e.code is code)


async def make(
    store: GroupStore,
    creator: str = "alice",
    others: tuple[str, ...] = ("bob", "carol"),
    *,
    at: datetime = T0,
    description: str | None = "about",
) -> GroupRecord:
    """Create a group the way the handler does."""
    group_id = f"g_{next(_seq):04d}"
    members = [
        Member(user_id=creator, role=ADMIN, joined_at=at),
        *(Member(user_id=uid, role=MEMBER, joined_at=at) for uid in others),
    ]
    group = domain.new_group(
        group_id,
        creator,
        name="Team",
        description=description,
        avatar_url=None,
        member_count=len(members),
        at=at,
    )
    await store.create(group, members)
    return group


def member(user_id: str, role: Role = MEMBER) -> Member:
    return Member(user_id=user_id, role=role, joined_at=T0 + timedelta(minutes=1))


async def count(store: GroupStore, group_id: str) -> int:
    group = (await store.access(group_id, "nobody")).group
    assert group is not None
    return group.member_count


async def test_create_and_access(store: GroupStore) -> None:
    group = await make(store)
    got = await store.access(group.id, "alice")
    assert got == Access(group=group, role=ADMIN)
    assert (await store.access(group.id, "bob")).role == MEMBER
    assert await store.access(group.id, "zed") == Access(group=group, role=None)
    assert await store.access("g_missing", "alice") == Access(group=None, role=None)
    assert group.member_count == 3


async def test_members_only_for_members(store: GroupStore) -> None:
    group = await make(store)
    access, ids = await store.members(group.id, "bob")
    assert access.role == MEMBER
    assert sorted(ids) == ["alice", "bob", "carol"]
    assert (await store.members(group.id, "zed"))[1] == []
    assert (await store.members("g_missing", "alice")) == (Access(group=None, role=None), [])


async def test_groups_of_newest_first(store: GroupStore) -> None:
    old = await make(store, others=("bob",), at=T0)
    new = await make(store, creator="bob", others=("alice",), at=T0 + timedelta(hours=1))
    await make(store, creator="carol", others=("dave",), at=T0 + timedelta(hours=2))
    mine = await store.groups_of("alice")
    assert [(g.id, role) for g, role in mine] == [(new.id, MEMBER), (old.id, ADMIN)]
    assert mine[0][0] == new
    assert await store.group_ids_of("alice") == [new.id, old.id]
    assert await store.groups_of("nobody") == []
    assert await store.group_ids_of("nobody") == []


async def test_update_changes_only_what_differs(store: GroupStore) -> None:
    group = await make(store)
    requested = domain.requested_patch("Team", "", "http://img")
    updated = await store.update(group.id, "alice", requested)
    assert updated.patch == domain.GroupPatch(description=None, avatar_url="http://img")
    assert updated.after.role == ADMIN
    stored = (await store.access(group.id, "alice")).group
    assert stored == updated.after.group
    assert stored is not None
    assert (stored.name, stored.description, stored.avatar_url) == ("Team", None, "http://img")
    again = await store.update(group.id, "alice", requested)
    assert again.patch.empty


async def test_update_refusals(store: GroupStore) -> None:
    group = await make(store)
    patch = domain.requested_patch("New", None, None)
    with refused(ErrorCode.FORBIDDEN):
        await store.update(group.id, "bob", patch)
    with refused(ErrorCode.FORBIDDEN):
        await store.update(group.id, "zed", patch)
    with refused(ErrorCode.NOT_FOUND):
        await store.update("g_missing", "alice", patch)
    assert (await store.access(group.id, "alice")).group == group


async def test_delete(store: GroupStore) -> None:
    group = await make(store)
    with refused(ErrorCode.FORBIDDEN):
        await store.delete(group.id, "bob")
    await store.delete(group.id, "alice")
    assert await store.access(group.id, "bob") == Access(group=None, role=None)
    assert await store.group_ids_of("bob") == []
    with refused(ErrorCode.NOT_FOUND):
        await store.delete(group.id, "alice")


async def test_add_member(store: GroupStore) -> None:
    group = await make(store)
    after = await store.add_member(group.id, "alice", member("dave", ADMIN))
    assert after.role == ADMIN
    assert after.group is not None
    assert after.group.member_count == 4
    assert await count(store, group.id) == 4
    assert (await store.access(group.id, "dave")).role == ADMIN
    assert await store.group_ids_of("dave") == [group.id]


async def test_add_member_refusals(store: GroupStore) -> None:
    group = await make(store)
    with refused(ErrorCode.CONFLICT):
        await store.add_member(group.id, "alice", member("bob"))
    with refused(ErrorCode.FORBIDDEN):
        await store.add_member(group.id, "bob", member("dave"))
    with refused(ErrorCode.FORBIDDEN):
        await store.add_member(group.id, "zed", member("dave"))
    with refused(ErrorCode.NOT_FOUND):
        await store.add_member("g_missing", "alice", member("dave"))
    assert await count(store, group.id) == 3
    assert (await store.access(group.id, "dave")).role is None


async def test_add_member_up_to_the_limit(store: GroupStore) -> None:
    others = tuple(f"u{i:04d}" for i in range(limits.MAX_GROUP_MEMBERS - 2))
    group = await make(store, others=others)
    await store.add_member(group.id, "alice", member("last"))
    assert await count(store, group.id) == limits.MAX_GROUP_MEMBERS
    with refused(ErrorCode.LIMIT_EXCEEDED):
        await store.add_member(group.id, "alice", member("one_too_many"))
    assert await count(store, group.id) == limits.MAX_GROUP_MEMBERS
    assert (await store.access(group.id, "one_too_many")).role is None


async def test_admin_removes_a_member(store: GroupStore) -> None:
    group = await make(store)
    removed = await store.remove_member(group.id, "alice", "bob")
    assert removed.kind is Removal.REMOVED
    assert removed.after.role == ADMIN
    assert removed.after.group is not None
    assert removed.after.group.member_count == 2
    assert await count(store, group.id) == 2
    assert (await store.access(group.id, "bob")).role is None
    assert await store.group_ids_of("bob") == []
    with refused(ErrorCode.NOT_FOUND):
        await store.remove_member(group.id, "alice", "bob")


async def test_member_removal_refusals(store: GroupStore) -> None:
    group = await make(store)
    with refused(ErrorCode.FORBIDDEN):
        await store.remove_member(group.id, "bob", "carol")
    with refused(ErrorCode.FORBIDDEN):
        await store.remove_member(group.id, "zed", "bob")
    with refused(ErrorCode.NOT_FOUND):
        await store.remove_member("g_missing", "alice", "bob")
    assert await count(store, group.id) == 3


async def test_member_leaves(store: GroupStore) -> None:
    group = await make(store)
    left = await store.remove_member(group.id, "bob", "bob")
    assert left.kind is Removal.LEFT
    assert left.after.role is None
    assert await count(store, group.id) == 2


async def test_last_admin_cannot_leave_but_can_after_promoting(store: GroupStore) -> None:
    group = await make(store)
    with refused(ErrorCode.CONFLICT):
        await store.remove_member(group.id, "alice", "alice")
    assert (await store.access(group.id, "alice")).role == ADMIN
    await store.set_role(group.id, "alice", "bob", ADMIN)
    left = await store.remove_member(group.id, "alice", "alice")
    assert left.kind is Removal.LEFT
    # Now bob is the last admin: the rule holds again.
    with refused(ErrorCode.CONFLICT):
        await store.remove_member(group.id, "bob", "bob")


async def test_sole_member_leaving_deletes_the_group(store: GroupStore) -> None:
    group = await make(store, others=("bob",))
    await store.remove_member(group.id, "bob", "bob")
    gone = await store.remove_member(group.id, "alice", "alice")
    assert gone.kind is Removal.DISBANDED
    assert gone.after == Access(group=None, role=None)
    assert await store.access(group.id, "alice") == Access(group=None, role=None)
    assert await store.group_ids_of("alice") == []


async def test_role_changes(store: GroupStore) -> None:
    group = await make(store)
    promoted = await store.set_role(group.id, "alice", "bob", ADMIN)
    assert promoted.changed
    assert promoted.after.role == ADMIN
    assert (await store.access(group.id, "bob")).role == ADMIN
    same = await store.set_role(group.id, "alice", "bob", ADMIN)
    assert not same.changed
    stepped_down = await store.set_role(group.id, "alice", "alice", MEMBER)
    assert stepped_down.changed
    assert stepped_down.after.role == MEMBER
    assert await count(store, group.id) == 3
    # bob is now the last admin.
    with refused(ErrorCode.CONFLICT):
        await store.set_role(group.id, "bob", "bob", MEMBER)
    with refused(ErrorCode.FORBIDDEN):
        await store.set_role(group.id, "alice", "carol", ADMIN)


async def test_role_change_refusals(store: GroupStore) -> None:
    group = await make(store)
    with refused(ErrorCode.NOT_FOUND):
        await store.set_role(group.id, "alice", "zed", ADMIN)
    with refused(ErrorCode.FORBIDDEN):
        await store.set_role(group.id, "zed", "bob", ADMIN)
    with refused(ErrorCode.NOT_FOUND):
        await store.set_role("g_missing", "alice", "bob", ADMIN)


async def test_demoted_admin_can_then_be_removed(store: GroupStore) -> None:
    group = await make(store)
    await store.set_role(group.id, "alice", "bob", ADMIN)
    removed = await store.remove_member(group.id, "alice", "bob")
    assert removed.kind is Removal.REMOVED
    # alice is the only admin again.
    with refused(ErrorCode.CONFLICT):
        await store.set_role(group.id, "alice", "alice", MEMBER)


async def test_concurrent_step_downs_keep_one_admin(store: GroupStore) -> None:
    group = await make(store)
    await store.set_role(group.id, "alice", "bob", ADMIN)
    outcomes = await asyncio.gather(
        store.set_role(group.id, "alice", "alice", MEMBER),
        store.set_role(group.id, "bob", "bob", MEMBER),
        return_exceptions=True,
    )
    refusals = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(refusals) == 1
    assert refusals[0].code is ErrorCode.CONFLICT
    roles = [(await store.access(group.id, uid)).role for uid in ("alice", "bob")]
    assert sorted(r or "" for r in roles) == [ADMIN, MEMBER]


async def test_concurrent_adds_respect_the_limit(store: GroupStore) -> None:
    others = tuple(f"u{i:04d}" for i in range(limits.MAX_GROUP_MEMBERS - 3))
    group = await make(store, others=others)
    outcomes = await asyncio.gather(
        *(store.add_member(group.id, "alice", member(f"new{i}")) for i in range(4)),
        return_exceptions=True,
    )
    refusals = [o for o in outcomes if isinstance(o, DomainError)]
    assert [r.code for r in refusals] == [ErrorCode.LIMIT_EXCEEDED] * 2
    assert await count(store, group.id) == limits.MAX_GROUP_MEMBERS
    _, ids = await store.members(group.id, "alice")
    assert len(ids) == limits.MAX_GROUP_MEMBERS


# --- concurrency: one store, and two instances on one database (two workers) ---------


def outcome_codes(outcomes: list[object]) -> list[ErrorCode | None]:
    """None for a success, the code for a refusal; anything else fails the test."""
    codes: list[ErrorCode | None] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, DomainError):
            raise outcome
        codes.append(outcome.code if isinstance(outcome, DomainError) else None)
    return codes


async def assert_counts_exact(store: GroupStore, group_id: str) -> list[str]:
    """`member_count` is the number of memberships; returns the member ids."""
    _, ids = await store.members(group_id, "alice")
    assert await count(store, group_id) == len(ids)
    return ids


async def test_last_seat_goes_to_exactly_one_add(store: GroupStore) -> None:
    others = tuple(f"u{i:04d}" for i in range(limits.MAX_GROUP_MEMBERS - 2))
    group = await make(store, others=others)
    assert await count(store, group.id) == limits.MAX_GROUP_MEMBERS - 1
    newcomers = [f"new{i}" for i in range(5)]
    outcomes = await asyncio.gather(
        *(store.add_member(group.id, "alice", member(uid)) for uid in newcomers),
        return_exceptions=True,
    )
    codes = outcome_codes(outcomes)
    assert Counter(codes) == Counter({None: 1, ErrorCode.LIMIT_EXCEEDED: 4})
    winner = newcomers[codes.index(None)]
    ids = await assert_counts_exact(store, group.id)
    assert len(ids) == limits.MAX_GROUP_MEMBERS
    assert [uid for uid in newcomers if uid in ids] == [winner]


async def test_two_workers_last_seat_goes_to_exactly_one_add(
    two_stores: tuple[GroupStore, ...],
) -> None:
    one, two = two_stores
    others = tuple(f"u{i:04d}" for i in range(limits.MAX_GROUP_MEMBERS - 2))
    group = await make(one, others=others)
    newcomers = [f"new{i}" for i in range(6)]
    outcomes = await asyncio.gather(
        *(
            two_stores[i % 2].add_member(group.id, "alice", member(uid))
            for i, uid in enumerate(newcomers)
        ),
        return_exceptions=True,
    )
    codes = outcome_codes(outcomes)
    assert codes.count(None) == 1
    assert codes.count(ErrorCode.LIMIT_EXCEEDED) == 5
    winner = newcomers[codes.index(None)]
    for store in (one, two):
        ids = await assert_counts_exact(store, group.id)
        assert len(ids) == limits.MAX_GROUP_MEMBERS
        assert [uid for uid in newcomers if uid in ids] == [winner]


async def test_concurrent_deletes_one_succeeds(store: GroupStore) -> None:
    group = await make(store)
    await store.set_role(group.id, "alice", "bob", ADMIN)
    outcomes = await asyncio.gather(
        store.delete(group.id, "alice"), store.delete(group.id, "bob"), return_exceptions=True
    )
    assert Counter(outcome_codes(outcomes)) == Counter([None, ErrorCode.NOT_FOUND])
    assert await store.access(group.id, "alice") == Access(group=None, role=None)
    assert await store.group_ids_of("bob") == []


async def test_two_workers_concurrent_deletes_one_succeeds(
    two_stores: tuple[GroupStore, ...],
) -> None:
    one, two = two_stores
    group = await make(one, others=tuple(f"u{i}" for i in range(50)))
    outcomes = await asyncio.gather(
        one.delete(group.id, "alice"), two.delete(group.id, "alice"), return_exceptions=True
    )
    assert Counter(outcome_codes(outcomes)) == Counter([None, ErrorCode.NOT_FOUND])
    for store in (one, two):
        assert await store.access(group.id, "u0") == Access(group=None, role=None)
        assert await store.group_ids_of("u0") == []


async def test_two_workers_keep_counters_exact(two_stores: tuple[GroupStore, ...]) -> None:
    one, two = two_stores
    group = await make(one, others=tuple(f"old{i}" for i in range(10)))
    adds = [
        two_stores[i % 2].add_member(
            group.id, "alice", member(f"new{i}", ADMIN if i < 3 else MEMBER)
        )
        for i in range(10)
    ]
    removals = [two_stores[i % 2].remove_member(group.id, "alice", f"old{i}") for i in range(6)]
    leaves = [two_stores[i % 2].remove_member(group.id, f"old{i}", f"old{i}") for i in range(6, 8)]
    outcomes = await asyncio.gather(*adds, *removals, *leaves, return_exceptions=True)
    assert outcome_codes(outcomes) == [None] * 18
    ids = await assert_counts_exact(two, group.id)
    assert sorted(ids) == sorted(["alice", "old8", "old9", *(f"new{i}" for i in range(10))])
    # admin_count is exact too: alice and new0..new2 are the admins, so all four can
    # step down except the last one, whichever that is.
    admins = ["alice", "new0", "new1", "new2"]
    step_downs = await asyncio.gather(
        *(two_stores[i % 2].set_role(group.id, uid, uid, MEMBER) for i, uid in enumerate(admins)),
        return_exceptions=True,
    )
    assert Counter(outcome_codes(step_downs)) == Counter([None, None, None, ErrorCode.CONFLICT])
    roles = [(await one.access(group.id, uid)).role for uid in admins]
    assert roles.count(ADMIN) == 1


async def test_two_workers_concurrent_step_downs_keep_one_admin(
    two_stores: tuple[GroupStore, ...],
) -> None:
    one, two = two_stores
    group = await make(one)
    await two.set_role(group.id, "alice", "bob", ADMIN)
    outcomes = await asyncio.gather(
        one.set_role(group.id, "alice", "alice", MEMBER),
        two.set_role(group.id, "bob", "bob", MEMBER),
        return_exceptions=True,
    )
    assert Counter(outcome_codes(outcomes)) == Counter([None, ErrorCode.CONFLICT])
    roles = [(await two.access(group.id, uid)).role for uid in ("alice", "bob")]
    assert sorted(r or "" for r in roles) == [ADMIN, MEMBER]


async def settle(store: GroupStore, group_id: str) -> list[str]:
    """Wait for cancelled commands' leftovers, then check `member_count` against the
    memberships (one read); returns the member ids.

    SQLite: cancelling a caller does not stop its job on the database thread, and one
    more write (a no-op update) runs after every job queued before it.
    """
    await store.update(group_id, "alice", domain.requested_patch("Team", None, None))
    access, ids = await store.members(group_id, "alice")
    assert access.group is not None
    assert access.group.member_count == len(ids)
    return ids


async def test_commands_cancelled_at_any_point_leave_counters_exact(store: GroupStore) -> None:
    # A worker stopped or a command abandoned half-way: whatever each command did, it
    # did completely or not at all.
    group = await make(store, others=("bob",), description=None)
    newcomers = [f"c{i}" for i in range(len(CANCEL_POINTS))]
    for uid, point in zip(newcomers, CANCEL_POINTS, strict=True):
        role = ADMIN if uid.endswith(("0", "3", "6", "9")) else MEMBER
        await cancelled_at(
            point, store.add_member(group.id, "alice", member(uid, role)), DomainError
        )
    await settle(store, group.id)
    for uid, point in zip(newcomers, reversed(CANCEL_POINTS), strict=True):
        await cancelled_at(point, store.remove_member(group.id, "alice", uid), DomainError)
    ids = await settle(store, group.id)
    # Take out whatever the cancelled removals left: admin_count must still be exact,
    # so alice is the last admin again and may not step down.
    for uid in set(ids) - {"alice", "bob"}:
        await store.remove_member(group.id, "alice", uid)
    assert sorted(await settle(store, group.id)) == ["alice", "bob"]
    with refused(ErrorCode.CONFLICT):
        await store.set_role(group.id, "alice", "alice", MEMBER)


# --- MongoDB only: failures injected by the server (`failCommand`) mid-transaction ----

#: The gateway's default ack deadline (CHAT_ACK_TIMEOUT_MS).
ACK_DEADLINE_S = 5.0


async def test_a_connection_lost_mid_transaction_runs_it_again_once(
    mongo_store: GroupStore, mongodb_url: str
) -> None:
    group = await make(mongo_store)
    # The counters' update loses its connection after the membership was inserted:
    # pymongo labels that TransientTransactionError and runs the whole transaction again.
    lost = {"failCommands": ["findAndModify"], "closeConnection": True, "appName": APP_NAME}
    async with fail_point(mongodb_url, {"times": 1}, lost):
        after = await mongo_store.add_member(group.id, "alice", member("dave", ADMIN))
    assert after.group is not None
    assert after.group.member_count == 4
    ids = await settle(mongo_store, group.id)
    assert sorted(ids) == ["alice", "bob", "carol", "dave"]
    # admin_count counted dave once: alice and dave may not both step down.
    outcomes = await asyncio.gather(
        mongo_store.set_role(group.id, "alice", "alice", MEMBER),
        mongo_store.set_role(group.id, "dave", "dave", MEMBER),
        return_exceptions=True,
    )
    assert Counter(outcome_codes(outcomes)) == Counter([None, ErrorCode.CONFLICT])


async def test_a_transaction_that_keeps_failing_changes_nothing_and_is_a_retry(
    mongo_store: GroupStore, mongodb_url: str
) -> None:
    group = await make(mongo_store)
    conflict = {
        "failCommands": ["findAndModify"],
        "errorCode": ServerCode.WRITE_CONFLICT,
        "errorLabels": ["TransientTransactionError"],
        "appName": APP_NAME,
    }
    started = time.monotonic()
    async with fail_point(mongodb_url, "alwaysOn", conflict):
        with pytest.raises(PyMongoError) as caught:
            await mongo_store.add_member(group.id, "alice", member("dave"))
    assert time.monotonic() - started < ACK_DEADLINE_S
    refusal = unavailable(caught.value)
    assert refusal is not None
    assert refusal.code is ErrorCode.UNAVAILABLE
    assert (await mongo_store.access(group.id, "dave")).role is None
    assert sorted(await settle(mongo_store, group.id)) == ["alice", "bob", "carol"]
