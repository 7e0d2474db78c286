"""Read receipts, typing and presence: who gets what, and how often."""

from __future__ import annotations

from collections.abc import Callable

from chat_contracts import limits
from tests.integration.conftest import GRACE_MS, TYPING_EXPIRY_MS, Connect, cmid, make_group


async def test_bulk_read_produces_one_event_per_chat(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    bob_b2 = await connect(bob, gateway=0)
    carol_b = await connect(carol, gateway=1)
    group = await make_group(alice_a, bob, carol)
    ids = []
    for n in range(5):
        ack = await alice_a.call(
            "message:send", {"clientMessageId": cmid(), "groupId": group, "content": f"r{n}"}
        )
        ids.append(ack["message"]["id"])
    await bob_b.wait_count("message:new", 5)

    ack = await bob_b.call("message:read", {"messageIds": ids, "groupId": group})
    assert ack == {"status": "ok", "count": 5}
    for socket in (alice_a, carol_b, bob_b2):
        event = await socket.wait_for("message:read")
        assert event["messageIds"] == ids
        assert event["readBy"] == bob
        assert event["groupId"] == group
        assert event["readAt"].endswith("Z")
        await socket.assert_silent("message:read", window=0.3)
    await bob_b.assert_silent("message:read", window=0.1)

    sync = await bob_b.call("sync", {"since": [{"groupId": group, "seq": 5}]})
    assert [c["unread"] for c in sync["chats"] if c.get("groupId") == group] == [0]
    # Reading the same messages again reads nothing new and tells nobody.
    again = await bob_b.call("message:read", {"messageId": ids[-1], "groupId": group})
    assert again == {"status": "ok", "count": 0}
    await alice_a.assert_silent("message:read")


async def test_typing_reaches_the_other_members_only_and_expires(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0, name="Alice")
    alice_b = await connect(alice, gateway=1, name="Alice")
    bob_b = await connect(bob, gateway=1)
    outsider = await connect(uid("eve"), gateway=1)
    group = await make_group(alice_a, bob)
    await bob_b.wait_for("group:member:added", lambda e: e["userId"] == bob)

    await alice_a.emit("typing:start", {"groupId": group})
    event = await bob_b.wait_for("typing:start")
    assert event == {"userId": alice, "userName": "Alice", "groupId": group}
    # Renewed within 2 s: not relayed again.
    await alice_a.emit("typing:start", {"groupId": group})
    await bob_b.assert_silent("typing:start", window=0.5)
    # Never renewed again: the server ends it.
    stop = await bob_b.wait_for("typing:stop", timeout=TYPING_EXPIRY_MS / 1000 + 3)
    assert stop == {"userId": alice, "userName": "Alice", "groupId": group}
    for socket in (alice_a, alice_b, outsider):
        await socket.assert_silent("typing:start", window=0.1)
        await socket.assert_silent("typing:stop", window=0.1)

    # An explicit stop after a start is relayed at once, and a non-member's typing is dropped.
    await alice_a.emit("typing:start", {"groupId": group})
    await bob_b.wait_for("typing:start")
    await alice_a.emit("typing:stop", {"groupId": group})
    await bob_b.wait_for("typing:stop")
    await outsider.emit("typing:start", {"groupId": group})
    await bob_b.assert_silent("typing:start")


async def test_typing_in_a_dm_by_peer(connect: Connect, uid: Callable[[str], str]) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1, name="Bob")
    # No DM between them yet: typing by targetUserId reaches no one (issue 6).
    await bob_b.emit("typing:start", {"targetUserId": alice})
    await alice_a.assert_silent("typing:start", window=0.5)
    sent = await bob_b.call(
        "message:send",
        {"clientMessageId": cmid(), "targetUserId": alice, "type": "TEXT", "content": "hi"},
    )
    assert sent["status"] == "ok", sent
    await alice_a.wait_for("message:new")
    await bob_b.emit("typing:stop", {"targetUserId": alice})
    await bob_b.emit("typing:start", {"targetUserId": alice})
    event = await alice_a.wait_for("typing:start")
    assert event == {"userId": bob, "userName": "Bob"}


async def test_presence_online_offline_with_grace(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    stranger = await connect(uid("stranger"), gateway=0)
    group = await make_group(alice_a, bob)

    bob_b = await connect(bob, gateway=1)
    online = await alice_a.wait_for("presence:update", lambda e: e["userId"] == bob)
    assert online == {"userId": bob, "status": "online"}

    # A quick reconnect (inside the grace period) announces nothing.
    await bob_b.close()
    bob_back = await connect(bob, gateway=0)
    await alice_a.assert_silent("presence:update", window=GRACE_MS / 1000 + 0.5)

    # A second socket does not announce anything either; a manual status does.
    bob_second = await connect(bob, gateway=1)
    ack = await bob_back.call("presence:set", {"status": "busy"})
    assert ack == {"status": "ok"}
    busy = await alice_a.wait_for("presence:update")
    assert busy == {"userId": bob, "status": "busy"}

    page = await alice_a.call("presence:query", {"groupId": group})
    assert page["status"] == "ok"
    assert sorted(page["onlineUserIds"]) == sorted([alice, bob])
    assert page["total"] == 2
    assert page["hasMore"] is False
    small = await alice_a.call("presence:query", {"groupId": group, "limit": 1})
    assert len(small["onlineUserIds"]) == 1
    assert small["hasMore"] is True
    rest = await alice_a.call(
        "presence:query", {"groupId": group, "limit": 1, "cursor": small["cursor"]}
    )
    assert sorted(small["onlineUserIds"] + rest["onlineUserIds"]) == sorted([alice, bob])
    denied = await stranger.call("presence:query", {"groupId": group})
    assert denied["code"] == "FORBIDDEN"

    # All of Bob's sockets go: offline is announced once, after the grace period.
    await bob_back.close()
    await bob_second.close()
    offline = await alice_a.wait_for(
        "presence:update", lambda e: e["status"] == "offline", timeout=GRACE_MS / 1000 + 5
    )
    assert offline["userId"] == bob
    assert offline["lastSeenAt"].endswith("Z")
    await stranger.assert_silent("presence:update", window=0.2)

    # Coming back announces the manual status kept in Redis, not "online".
    await connect(bob, gateway=1)
    back = await alice_a.wait_for("presence:update", lambda e: e["userId"] == bob)
    assert back["status"] == "busy"


async def test_no_typing_in_groups_above_100_members_whatever_field_names_them(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    owner_id, member_id = uid("owner"), uid("member")
    owner = await connect(owner_id, gateway=0)
    others = [uid(f"x{n:03d}") for n in range(limits.TYPING_MAX_GROUP_SIZE - 1)]
    big = await make_group(owner, member_id, *others)  # 101 members with the owner
    small = await make_group(owner, member_id, name="small")
    member = await connect(member_id, gateway=1)

    await owner.emit("typing:start", {"conversationId": small})
    assert (await member.wait_for("typing:start"))["groupId"] == small  # the relay works
    for field in ("groupId", "conversationId"):
        await owner.emit("typing:start", {field: big})
    await member.assert_silent("typing:start", window=0.5)
