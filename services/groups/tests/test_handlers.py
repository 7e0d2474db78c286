"""The groups commands end to end through the router, with a real NATS for the fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts import bus as b
from chat_contracts import client as c
from chat_contracts import limits
from chat_contracts.bus import Actor, Command, Fanout, Reply
from chat_groups.handlers import GroupHandlers
from chat_groups.store.sqlite import SqliteGroupStore
from chat_runtime.bus import Bus, Publisher, encode
from chat_runtime.clock import ManualClock, TimeOrderedIds
from chat_runtime.worker import Router

SENTINEL = "rt.test.sentinel"
_fanout = msgspec.msgpack.Decoder(Fanout)


class Events:
    """Every fan-out published on `rt.>`, in publish order."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._seen: list[tuple[str, Fanout]] = []
        self._sentinel = asyncio.Event()
        #: Bytes of every fan-out message received, in order.
        self.sizes: list[int] = []

    async def start(self) -> None:
        await self._bus.subscribe("rt.>", self._on)
        await self._bus.flush()

    async def _on(self, msg: Msg) -> None:
        if msg.subject == SENTINEL:
            self._sentinel.set()
        else:
            self._seen.append((msg.subject, _fanout.decode(msg.data)))
            self.sizes.append(len(msg.data))

    async def take(self) -> list[tuple[str, Fanout]]:
        """What was published so far (NATS keeps one connection's order: the sentinel
        arrives after everything published before it)."""
        self._sentinel.clear()
        await self._bus.publish(SENTINEL, b"")
        await asyncio.wait_for(self._sentinel.wait(), timeout=5)
        seen, self._seen = self._seen, []
        return seen


def summary(events: list[tuple[str, Fanout]]) -> list[tuple[str, str, Any]]:
    """(subject, join/leave or event name, rooms or decoded data) in delivery order.

    A room event that skips a user is named `event -user`.
    """
    out: list[tuple[str, str, Any]] = []
    for subject, f in events:
        if f.room_copy is not None:
            continue  # a room event's copy to new members: libs/runtime/tests/test_joins.py
        if f.users:
            out.append((subject, "to", f.users))
        if f.join:
            out.append((subject, "join", f.join))
        if f.leave:
            out.append((subject, "leave", f.leave))
        frames = [(f.event, f.data), *((m.event, m.data) for m in f.more)] if f.event else []
        for event, data in frames:
            name = event + (" [close]" if f.close_room else "")
            name += f" -{f.skip_user}" if f.skip_user else ""
            out.append((subject, name, msgspec.json.decode(data)))
    return out


class Harness:
    def __init__(self, router: Router, events: Events, clock: ManualClock) -> None:
        self.router = router
        self.events = events
        self.clock = clock

    async def call(self, action: str, user: str, payload: msgspec.Struct) -> Reply:
        body = encode(Command(actor=Actor(user_id=user, name=user.title()), payload=payload))
        return await self.router.dispatch(action, body)

    async def ok(self, action: str, user: str, payload: msgspec.Struct) -> dict[str, Any]:
        reply = await self.call(action, user, payload)
        assert reply.status == "ok", reply
        assert reply.result is not None
        result: dict[str, Any] = msgspec.msgpack.decode(reply.result)
        return result

    async def refused(self, action: str, user: str, payload: msgspec.Struct) -> str:
        reply = await self.call(action, user, payload)
        assert reply.status == "error", reply
        assert reply.code is not None
        return reply.code

    async def create(self, user: str = "alice", *others: str) -> str:
        result = await self.ok("create", user, c.GroupCreate(name="Team", member_ids=list(others)))
        await self.events.take()
        # Groups made later sort first; a tie would fall back to the random id part.
        self.clock.advance(seconds=1)
        group_id: str = result["group"]["id"]
        return group_id


@pytest_asyncio.fixture
async def h(nats_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    bus = await Bus.connect(nats_url, name="groups-test")
    store = SqliteGroupStore(tmp_path / "groups.sqlite3")
    await store.open()
    clock = ManualClock()
    events = Events(bus)
    await events.start()
    router = GroupHandlers(store, Publisher(bus), clock, TimeOrderedIds(clock)).router()
    try:
        yield Harness(router, events, clock)
    finally:
        await store.close()
        await bus.close()


async def test_create_joins_every_member_then_announces_each(h: Harness) -> None:
    result = await h.ok(
        "create", "alice", c.GroupCreate(name="Team", member_ids=["bob", "alice", "carol", "bob"])
    )
    group = result["group"]
    gid = group["id"]
    assert gid.startswith("g_")
    assert group == {
        "id": gid,
        "name": "Team",
        "createdBy": "alice",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "memberCount": 3,
        "myRole": "ADMIN",
    }
    added = [
        {"groupId": gid, "userId": uid, "addedBy": "alice", "role": role}
        for uid, role in (("alice", "ADMIN"), ("bob", "MEMBER"), ("carol", "MEMBER"))
    ]
    # One delivery to all members: each joins and gets every member event (no room
    # event could beat the gateway's new room subscription), the events on NATS once.
    expected: list[tuple[str, str, Any]] = [
        ("rt.users", "to", ["alice", "bob", "carol"]),
        ("rt.users", "join", [gid]),
    ]
    expected.extend(("rt.users", "group:member:added", a) for a in added)
    assert summary(await h.events.take()) == expected


async def test_create_of_the_largest_group_is_one_message_of_linear_size(h: Harness) -> None:
    # Ids of the longest length: the worst case for the bytes on NATS.
    others = [f"{i:04d}".ljust(limits.MAX_ID_LENGTH, "u") for i in range(1, 1024)]
    creator = "0000".ljust(limits.MAX_ID_LENGTH, "u")
    result = await h.ok("create", creator, c.GroupCreate(name="Big", member_ids=others))
    published = await h.events.take()
    # One delivery per member was 1,024 messages of 377 KB each (386 MB).
    assert [subject for subject, _ in published] == ["rt.users"]
    (_, fanout), size = published[0], h.events.sizes[-1]
    assert fanout.users == [creator, *others]
    assert fanout.join == [result["group"]["id"]]
    assert 1 + len(fanout.more) == 1024
    # Linear: each member's id in the list and in its event, plus the creator's id as
    # `addedBy` in each event: ~500 bytes a member (510 KB), below the 1 MiB payload.
    assert size < 1024 * 600


async def test_create_over_the_limit_is_refused(h: Harness) -> None:
    others = [f"u{i}" for i in range(limits.MAX_GROUP_MEMBERS)]
    payload = c.GroupCreate(name="Big", member_ids=others)
    assert await h.refused("create", "alice", payload) == "LIMIT_EXCEEDED"
    assert await h.events.take() == []
    assert (await h.ok("list", "alice", c.GroupsList())) == {"groups": []}


async def test_update_emits_changed_fields_only(h: Harness) -> None:
    gid = await h.create("alice", "bob")
    update = c.GroupUpdate(group_id=gid, name="Team", description="hello")
    assert await h.refused("update", "bob", update) == "FORBIDDEN"
    assert await h.refused("update", "zed", update) == "FORBIDDEN"
    assert await h.refused("update", "alice", c.GroupUpdate(group_id="g_x", name="x")) == (
        "NOT_FOUND"
    )
    result = await h.ok("update", "alice", update)
    assert result["group"]["description"] == "hello"
    assert summary(await h.events.take()) == [
        (
            f"rt.room.{gid}",
            "group:updated",
            {"groupId": gid, "updatedBy": "alice", "description": "hello"},
        )
    ]
    await h.ok("update", "alice", update)
    assert await h.events.take() == []


async def test_delete_closes_the_room(h: Harness) -> None:
    gid = await h.create("alice", "bob")
    assert await h.refused("delete", "bob", c.GroupRef(group_id=gid)) == "FORBIDDEN"
    assert await h.ok("delete", "alice", c.GroupRef(group_id=gid)) == {}
    assert summary(await h.events.take()) == [
        (f"rt.room.{gid}", "group:deleted [close]", {"groupId": gid, "deletedBy": "alice"})
    ]
    assert await h.refused("get", "alice", c.GroupRef(group_id=gid)) == "NOT_FOUND"


async def test_concurrent_deletes_emit_one_group_deleted(h: Harness) -> None:
    gid = await h.create("alice", "bob")
    await h.ok("member_role", "alice", c.GroupMemberRole(group_id=gid, user_id="bob", role="ADMIN"))
    await h.events.take()
    ref = c.GroupRef(group_id=gid)
    replies = await asyncio.gather(h.call("delete", "alice", ref), h.call("delete", "bob", ref))
    assert sorted((r.status, r.code) for r in replies) == [("error", "NOT_FOUND"), ("ok", None)]
    deleted = [e for e in summary(await h.events.take()) if e[1] == "group:deleted [close]"]
    assert len(deleted) == 1


async def test_member_add_joins_before_the_event(h: Harness) -> None:
    gid = await h.create("alice", "bob")
    add = c.GroupMemberAdd(group_id=gid, user_id="dave")
    assert await h.refused("member_add", "bob", add) == "FORBIDDEN"
    result = await h.ok("member_add", "alice", add)
    assert result["group"]["memberCount"] == 3
    added = {"groupId": gid, "userId": "dave", "addedBy": "alice", "role": "MEMBER"}
    assert summary(await h.events.take()) == [
        ("rt.user.dave", "join", [gid]),
        ("rt.user.dave", "group:member:added", added),
        (f"rt.room.{gid}", "group:member:added -dave", added),
    ]
    assert await h.refused("member_add", "alice", add) == "CONFLICT"
    assert await h.events.take() == []


async def test_admin_removes_then_the_user_leaves_the_room(h: Harness) -> None:
    gid = await h.create("alice", "bob", "carol")
    remove = c.GroupMemberRemove(group_id=gid, user_id="bob")
    assert await h.refused("member_remove", "carol", remove) == "FORBIDDEN"
    result = await h.ok("member_remove", "alice", remove)
    assert result["group"]["memberCount"] == 2
    assert result["group"]["myRole"] == "ADMIN"
    removed = {"groupId": gid, "userId": "bob", "removedBy": "alice"}
    assert summary(await h.events.take()) == [
        (f"rt.room.{gid}", "group:member:removed -bob", removed),
        ("rt.user.bob", "leave", [gid]),
        ("rt.user.bob", "group:member:removed", removed),
    ]
    assert await h.refused("member_remove", "alice", remove) == "NOT_FOUND"


async def test_leaving(h: Harness) -> None:
    gid = await h.create("alice", "bob")
    leave = c.GroupMemberRemove(group_id=gid, user_id="alice")
    assert await h.refused("member_remove", "alice", leave) == "CONFLICT"
    assert (
        await h.ok("member_remove", "bob", c.GroupMemberRemove(group_id=gid, user_id="bob")) == {}
    )
    left = {"groupId": gid, "userId": "bob", "removedBy": "bob"}
    assert summary(await h.events.take()) == [
        (f"rt.room.{gid}", "group:member:removed -bob", left),
        ("rt.user.bob", "leave", [gid]),
        ("rt.user.bob", "group:member:removed", left),
    ]
    # alice is now the sole member: leaving deletes the group.
    assert await h.ok("member_remove", "alice", leave) == {}
    assert summary(await h.events.take()) == [
        (f"rt.room.{gid}", "group:deleted [close]", {"groupId": gid, "deletedBy": "alice"})
    ]
    assert (await h.ok("membership", "x", b.MembershipQuery(group_id=gid, user_id="alice"))) == {
        "exists": False
    }


async def test_member_role(h: Harness) -> None:
    gid = await h.create("alice", "bob")
    promote = c.GroupMemberRole(group_id=gid, user_id="bob", role="ADMIN")
    assert await h.refused("member_role", "bob", promote) == "FORBIDDEN"
    await h.ok("member_role", "alice", promote)
    assert summary(await h.events.take()) == [
        (
            f"rt.room.{gid}",
            "group:member:role_changed",
            {"groupId": gid, "userId": "bob", "role": "ADMIN", "changedBy": "alice"},
        )
    ]
    again = await h.ok("member_role", "alice", promote)
    assert again["group"]["myRole"] == "ADMIN"
    assert await h.events.take() == []
    step_down = c.GroupMemberRole(group_id=gid, user_id="alice", role="MEMBER")
    assert (await h.ok("member_role", "alice", step_down))["group"]["myRole"] == "MEMBER"
    await h.events.take()
    last = c.GroupMemberRole(group_id=gid, user_id="bob", role="MEMBER")
    assert await h.refused("member_role", "bob", last) == "CONFLICT"
    missing = c.GroupMemberRole(group_id=gid, user_id="zed", role="MEMBER")
    assert await h.refused("member_role", "bob", missing) == "NOT_FOUND"


async def test_list_get_and_internal_queries(h: Harness) -> None:
    first = await h.create("alice", "bob")
    second = await h.create("bob", "alice")
    listed = await h.ok("list", "alice", c.GroupsList())
    assert [(g["id"], g["myRole"]) for g in listed["groups"]] == [
        (second, "MEMBER"),
        (first, "ADMIN"),
    ]
    got = await h.ok("get", "bob", c.GroupRef(group_id=first))
    assert got["group"]["myRole"] == "MEMBER"
    assert await h.refused("get", "zed", c.GroupRef(group_id=first)) == "FORBIDDEN"
    assert await h.refused("get", "alice", c.GroupRef(group_id="g_none")) == "NOT_FOUND"

    query = b.MembershipQuery(group_id=first, user_id="bob")
    assert await h.ok("membership", "svc", query) == {
        "exists": True,
        "memberCount": 2,
        "role": "MEMBER",
    }
    outsider = b.MembershipQuery(group_id=first, user_id="zed")
    assert await h.ok("membership", "svc", outsider) == {"exists": True, "memberCount": 2}

    members = await h.ok("members", "bob", b.MembersQuery(group_id=first))
    assert sorted(members["userIds"]) == ["alice", "bob"]
    assert await h.refused("members", "zed", b.MembersQuery(group_id=first)) == "FORBIDDEN"
    assert await h.refused("members", "zed", b.MembersQuery(group_id="g_none")) == "NOT_FOUND"

    assert await h.ok("mine", "alice", b.Empty()) == {"chatIds": [second, first]}
    assert await h.ok("mine", "zed", b.Empty()) == {"chatIds": []}


async def test_malformed_payload_is_a_validation_error(h: Harness) -> None:
    body = encode({"actor": ["alice", "Alice"], "payload": {"name": ""}})
    reply = await h.router.dispatch("create", body)
    assert (reply.status, reply.code) == ("error", "VALIDATION_ERROR")
    blank = await h.refused("create", "alice", c.GroupCreate(name="   "))
    assert blank == "VALIDATION_ERROR"
