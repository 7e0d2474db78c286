"""Group management and its five events, seen by exactly the right sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import nats
from nats.aio.msg import Msg

from chat_contracts import subjects
from chat_contracts.bus import Fanout
from chat_runtime.bus import Bus
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, cmid, make_group

_fanout = msgspec.msgpack.Decoder(Fanout)


async def test_create_announces_every_member_to_every_member(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    outsider = await connect(uid("dave"), gateway=1)

    ack = await alice_a.call(
        "group:create", {"name": "Launch", "description": "ship it", "memberIds": [bob, carol, bob]}
    )
    assert ack["status"] == "ok", ack
    group = ack["group"]
    assert group["name"] == "Launch"
    assert group["description"] == "ship it"
    assert group["createdBy"] == alice
    assert group["memberCount"] == 3
    assert group["myRole"] == "ADMIN"

    for socket in (alice_a, bob_b):
        events = await socket.wait_count("group:member:added", 3)
        assert sorted((e["userId"], e["role"]) for e in events) == sorted(
            [(alice, "ADMIN"), (bob, "MEMBER"), (carol, "MEMBER")]
        )
        assert {e["addedBy"] for e in events} == {alice}
        assert {e["groupId"] for e in events} == {group["id"]}
    await outsider.assert_silent("group:member:added")

    listed = await bob_b.call("groups:list", {})
    assert [(g["id"], g["myRole"]) for g in listed["groups"]] == [(group["id"], "MEMBER")]
    got = await bob_b.call("group:get", {"groupId": group["id"]})
    assert got["group"]["memberCount"] == 3


class FanoutCounter:
    """Every fan-out message on NATS addressed to some of `users`, seen by a plain
    NATS client (the gateways' view of the traffic)."""

    def __init__(self, users: set[str]) -> None:
        self.users = users
        self.messages: list[tuple[str, int]] = []
        self.reached: set[str] = set()
        self.changed = asyncio.Event()

    async def on(self, msg: Msg) -> None:
        if msg.subject == subjects.USERS_FANOUT:
            to = set(_fanout.decode(msg.data).users) & self.users
        elif msg.subject.startswith(subjects.USER_PREFIX):
            to = {msg.subject[len(subjects.USER_PREFIX) :]} & self.users
        else:
            return
        if to:
            self.messages.append((msg.subject, len(msg.data)))
            self.reached |= to
            self.changed.set()

    async def wait_all_reached(self, timeout: float = 10.0) -> None:
        async def until() -> None:
            while self.reached != self.users:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


async def test_create_reaches_every_member_in_one_nats_message(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    offline = [uid(f"m{i:03d}") for i in range(297)]
    members = [alice, bob, carol, *offline]
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    carol_b = await connect(carol, gateway=1)
    outsider = await connect(uid("dave"), gateway=0)
    counter = FanoutCounter(set(members))
    nc = await nats.connect(stack.nats.url)
    try:
        await nc.subscribe("rt.>", cb=counter.on)
        await Bus(nc).flush()  # nats-py's flush() can overtake the SUB (Bus.flush)
        ack = await alice_a.call("group:create", {"name": "big", "memberIds": members[1:]})
        assert ack["status"] == "ok", ack
        group = ack["group"]["id"]
        await counter.wait_all_reached()
    finally:
        await nc.close()
    # One message for 300 members (one per member carried 300 events each: 300 x 300).
    assert [subject for subject, _ in counter.messages] == [subjects.USERS_FANOUT]
    # Clients still see one `group:member:added` per member, the creator's included.
    for socket in (alice_a, bob_b, carol_b):
        events = await socket.wait_count("group:member:added", 300)
        assert len(events) == 300
        assert sorted(e["userId"] for e in events) == sorted(members)
        assert {(e["groupId"], e["addedBy"]) for e in events} == {(group, alice)}
    # The members' sockets joined the room on both gateways.
    sent = await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "welcome"}
    )
    for socket in (bob_b, carol_b):
        assert (await socket.wait_for("message:new"))["id"] == sent["message"]["id"]
    await outsider.assert_silent("group:member:added")


async def test_added_member_receives_at_once_and_removed_member_stops_at_once(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await connect(alice, gateway=0)
    bob_a = await connect(bob, gateway=0)
    bob_b = await connect(bob, gateway=1)  # Bob on both gateways
    carol_b = await connect(carol, gateway=1)
    group = await make_group(alice_a, bob)

    # Carol is added: she and the members see it, and the next message reaches her.
    added = await alice_a.call("group:member:add", {"groupId": group, "userId": carol})
    assert added["status"] == "ok", added
    assert added["group"]["memberCount"] == 3
    for socket in (carol_b, bob_a, bob_b):
        event = await socket.wait_for("group:member:added", lambda e: e["userId"] == carol)
        assert event == {"groupId": group, "userId": carol, "addedBy": alice, "role": "MEMBER"}
    sent = await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "hi carol"}
    )
    assert (await carol_b.wait_for("message:new"))["id"] == sent["message"]["id"]

    # Bob is removed: both his sockets get the removal, then nothing more of the group.
    removed = await alice_a.call("group:member:remove", {"groupId": group, "userId": bob})
    assert removed["status"] == "ok", removed
    for socket in (bob_a, bob_b, carol_b):
        event = await socket.wait_for("group:member:removed")
        assert event == {"groupId": group, "userId": bob, "removedBy": alice}
    after = await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "bob is gone"}
    )
    assert (await carol_b.wait_for("message:new"))["id"] == after["message"]["id"]
    for socket in (bob_a, bob_b):
        socket.events.pop("message:new", None)
        await socket.assert_silent("message:new")
    refused = await bob_a.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "hey"}
    )
    assert refused["code"] == "FORBIDDEN"


async def test_role_change_update_and_delete(connect: Connect, uid: Callable[[str], str]) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    group = await make_group(alice_a, bob)

    # Members may not manage the group.
    denied = await bob_b.call("group:update", {"groupId": group, "name": "mine now"})
    assert denied["code"] == "FORBIDDEN"
    # The last admin cannot demote itself.
    last = await alice_a.call(
        "group:member:role", {"groupId": group, "userId": alice, "role": "MEMBER"}
    )
    assert last["code"] == "CONFLICT"

    promoted = await alice_a.call(
        "group:member:role", {"groupId": group, "userId": bob, "role": "ADMIN"}
    )
    assert promoted["status"] == "ok", promoted
    for socket in (alice_a, bob_b):
        event = await socket.wait_for("group:member:role_changed")
        assert event == {"groupId": group, "userId": bob, "role": "ADMIN", "changedBy": alice}

    updated = await bob_b.call(
        "group:update", {"groupId": group, "name": "Renamed", "avatarUrl": "https://x/a.png"}
    )
    assert updated["status"] == "ok", updated
    assert updated["group"]["name"] == "Renamed"
    for socket in (alice_a, bob_b):
        event = await socket.wait_for("group:updated")
        assert event == {
            "groupId": group,
            "name": "Renamed",
            "avatarUrl": "https://x/a.png",
            "updatedBy": bob,
        }

    deleted = await alice_a.call("group:delete", {"groupId": group})
    assert deleted == {"status": "ok"}
    for socket in (alice_a, bob_b):
        assert await socket.wait_for("group:deleted") == {"groupId": group, "deletedBy": alice}
    gone = await bob_b.call("group:get", {"groupId": group})
    assert gone["code"] == "NOT_FOUND"
    post = await bob_b.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "?"}
    )
    assert post["code"] == "NOT_FOUND"


async def test_member_may_leave_but_not_remove_others(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await connect(alice)
    bob_b = await connect(bob, gateway=1)
    group = await make_group(alice_a, bob, carol)

    refused = await bob_b.call("group:member:remove", {"groupId": group, "userId": carol})
    assert refused["code"] == "FORBIDDEN"
    left = await bob_b.call("group:member:remove", {"groupId": group, "userId": bob})
    assert left["status"] == "ok", left
    event = await alice_a.wait_for("group:member:removed", lambda e: e["userId"] == bob)
    assert event["removedBy"] == bob
    listed = await bob_b.call("groups:list", {})
    assert all(g["id"] != group for g in listed["groups"])


async def test_group_size_limit(connect: Connect, uid: Callable[[str], str]) -> None:
    alice = await connect(uid("alice"))
    too_many = [uid(f"m{i}") for i in range(1024)]  # plus the creator = 1,025
    ack = await alice.call("group:create", {"name": "huge", "memberIds": too_many})
    assert ack["status"] == "error"
    assert ack["code"] == "LIMIT_EXCEEDED"
    fits = await alice.call("group:create", {"name": "full", "memberIds": too_many[:1023]})
    assert fits["status"] == "ok", fits
    assert fits["group"]["memberCount"] == 1024
    over = await alice.call(
        "group:member:add", {"groupId": fits["group"]["id"], "userId": too_many[-1]}
    )
    assert over["code"] == "LIMIT_EXCEEDED"
