"""Blocking, custom status and last seen through real gateways, workers, NATS and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import GRACE_MS, Connect, cmid, make_group


def text(content: str = "hi", **target: str) -> dict[str, Any]:
    return {"clientMessageId": cmid(), "type": "TEXT", "content": content, **target}


def iso_in(seconds: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def dm(sender: ChatClient, peer: str) -> str:
    """A DM from `sender` to `peer`; its conversation id."""
    ack = await sender.call("message:send", text(targetUserId=peer))
    assert ack["status"] == "ok", ack
    conversation: str = ack["message"]["conversationId"]
    return conversation


async def test_blocking_oneself_or_a_stranger_is_refused(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    ann = await connect(uid("ann"))
    own = await ann.call("user:block", {"userId": uid("ann")})
    assert (own["status"], own["code"], own["field"]) == ("error", "VALIDATION_ERROR", "userId")
    ghost = await ann.call("user:block", {"userId": uid("ghost")})
    assert (ghost["status"], ghost["code"]) == ("error", "NOT_FOUND")
    bad = await ann.call("user:block", {})
    assert bad["code"] == "VALIDATION_ERROR"


async def test_block_refuses_dms_both_ways_and_leaves_groups_alone(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    ann = await connect(ann_id, gateway=0)
    bob = await connect(bob_id, gateway=1)
    conversation = await dm(bob, ann_id)
    await ann.wait_for("message:new")
    group = await make_group(ann, bob_id)
    await bob.wait_for("group:member:added", lambda e: e["userId"] == bob_id)

    assert await ann.call("user:block", {"userId": bob_id}) == {"status": "ok"}
    assert await bob.wait_for("user:blocked") == {"blockedBy": ann_id}

    for sender, target in (
        (bob, {"targetUserId": ann_id}),
        (bob, {"conversationId": conversation}),
        (ann, {"targetUserId": bob_id}),
        (ann, {"conversationId": conversation}),
    ):
        refused = await sender.call("message:send", text(**target))
        assert (refused["status"], refused["code"]) == ("error", "BLOCKED"), (target, refused)
    await ann.assert_silent("message:new", window=0.3)
    history = await ann.call("messages:history", {"conversationId": conversation})
    assert len(history["messages"]) == 1  # nothing refused was stored

    in_group = await bob.call("message:send", text(groupId=group))
    assert in_group["status"] == "ok"
    assert (await ann.wait_for("message:new"))["groupId"] == group

    assert await ann.call("user:unblock", {"userId": bob_id}) == {"status": "ok"}
    assert await bob.wait_for("user:unblocked") == {"unblockedBy": ann_id}
    again = await bob.call("message:send", text(conversationId=conversation))
    assert again["status"] == "ok", again
    assert (await ann.wait_for("message:new"))["conversationId"] == conversation
    await bob.assert_silent("user:blocked", window=0.1)


async def test_blocked_user_sees_no_typing_presence_or_status(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    ann_id, bob_id, cat_id = uid("ann"), uid("bob"), uid("cat")
    ann = await connect(ann_id, gateway=0)
    bob = await connect(bob_id, gateway=1)
    cat = await connect(cat_id, gateway=1)
    group = await make_group(ann, bob_id, cat_id)
    for member in (bob, cat):
        await member.wait_for("group:member:added", lambda e: e["userId"] == cat_id)
    assert await ann.call("user:block", {"userId": bob_id}) == {"status": "ok"}
    await bob.wait_for("user:blocked")

    # Bob's typing reaches Cat, never Ann.
    await bob.emit("typing:start", {"groupId": group})
    assert (await cat.wait_for("typing:start"))["userId"] == bob_id
    await ann.assert_silent("typing:start", window=0.3)
    # Ann's presence and status reach Cat, never Bob; Bob's never reach Ann.
    assert await ann.call("presence:set", {"status": "busy"}) == {"status": "ok"}
    assert (await cat.wait_for("presence:update"))["userId"] == ann_id
    assert await ann.call("status:set", {"status": "away"}) == {"status": "ok"}
    assert (await cat.wait_for("status:updated"))["userId"] == ann_id
    assert await bob.call("status:set", {"status": "here"}) == {"status": "ok"}
    assert (await cat.wait_for("status:updated"))["userId"] == bob_id
    await bob.assert_silent("presence:update", window=0.3)
    await bob.assert_silent("status:updated", window=0.1)
    await ann.assert_silent("status:updated", window=0.1)
    # Nor in presence pages or last seen.
    page = await bob.call("presence:query", {"groupId": group})
    assert ann_id not in page["onlineUserIds"]
    assert bob_id in page["onlineUserIds"]
    seen = await bob.call("presence:last_seen", {"userIds": [ann_id, cat_id]})
    assert [row["userId"] for row in seen["lastSeen"]] == [cat_id]


async def test_status_reaches_contacts_and_own_sockets_only(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    ann_id, bob_id, dee_id = uid("ann"), uid("bob"), uid("dee")
    ann = await connect(ann_id, gateway=0)
    ann_phone = await connect(ann_id, gateway=1)
    bob = await connect(bob_id, gateway=1)
    dee = await connect(dee_id, gateway=0)
    stranger = await connect(uid("eve"), gateway=1)
    await make_group(ann, bob_id)
    await bob.wait_for("group:member:added", lambda e: e["userId"] == bob_id)
    await dm(dee, ann_id)  # Dee is a DM peer
    await dm(bob, ann_id)  # Bob shares a group and a DM with Ann

    expires = iso_in(3600)
    ack = await ann.call(
        "status:set", {"status": "In a meeting", "emoji": "📅", "expiresAt": expires}
    )
    assert ack == {"status": "ok"}
    want = {"userId": ann_id, "status": "In a meeting", "emoji": "📅", "expiresAt": expires}
    for socket in (bob, dee, ann_phone):
        assert await socket.wait_for("status:updated") == want
    await ann.assert_silent("status:updated", window=0.2)  # it has the ack
    await stranger.assert_silent("status:updated", window=0.1)
    # Published on both of Bob's rooms with Ann, emitted to him once.
    await bob.assert_silent("status:updated", window=0.1)

    # The status rides on presence changes.
    assert await ann.call("presence:set", {"status": "away"}) == {"status": "ok"}
    update = await bob.wait_for("presence:update", lambda e: e["userId"] == ann_id)
    assert update == {"userId": ann_id, "status": "away", "customStatus": "📅 In a meeting"}

    for bad, field in (
        ({"status": "x", "expiresAt": iso_in(-1)}, "expiresAt"),
        ({"status": "x", "emoji": "not one"}, "emoji"),
        ({"status": "x" * 141}, "status"),
    ):
        refused = await ann.call("status:set", bad)
        assert (refused["status"], refused["code"], refused["field"]) == (
            "error",
            "VALIDATION_ERROR",
            field,
        )
    await bob.assert_silent("status:updated", window=0.2)


async def test_an_expired_status_is_cleared_by_the_server(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    ann = await connect(ann_id, gateway=0)
    bob = await connect(bob_id, gateway=1)
    await dm(bob, ann_id)
    ack = await ann.call("status:set", {"status": "brb", "expiresAt": iso_in(1)})
    assert ack == {"status": "ok"}
    assert (await bob.wait_for("status:updated"))["status"] == "brb"
    cleared = await bob.wait_for("status:updated", timeout=5)
    assert cleared == {"userId": ann_id, "status": ""}
    assert await ann.wait_for("status:updated") == cleared
    await bob.assert_silent("status:updated", window=0.5)  # once, not per sweep


async def test_last_seen_is_pushed_and_answered_for_contacts_only(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    ann_id, bob_id, dee_id, eve_id = uid("ann"), uid("bob"), uid("dee"), uid("eve")
    ann = await connect(ann_id, gateway=0)
    await make_group(ann, bob_id)
    dee = await connect(dee_id, gateway=1)
    await dm(dee, ann_id)
    bob = await connect(bob_id, gateway=1)
    eve = await connect(eve_id, gateway=1)
    await ann.wait_for("presence:update", lambda e: e["userId"] == bob_id)

    for gone in (bob, dee, eve):
        await gone.close()
    timeout = GRACE_MS / 1000 + 5
    pushed = {
        (await ann.wait_for("presence:last_seen", lambda e, u=u: e["userId"] == u, timeout))[
            "userId"
        ]
        for u in (bob_id, dee_id)
    }
    assert pushed == {bob_id, dee_id}
    offline = await ann.wait_for("presence:update", lambda e: e["userId"] == dee_id, timeout)
    assert offline["status"] == "offline"
    assert offline["lastSeenAt"].endswith("Z")

    asked = await ann.call("presence:last_seen", {"userIds": [eve_id, dee_id, bob_id, dee_id]})
    assert asked["status"] == "ok"
    assert [row["userId"] for row in asked["lastSeen"]] == [dee_id, bob_id]
    assert asked["lastSeen"][0]["lastSeenAt"] == offline["lastSeenAt"]
    await ann.assert_silent("presence:last_seen", window=0.2)  # Eve is no contact


async def test_status_expiry_survives_a_restart_of_the_users_worker(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    ann = await connect(ann_id, gateway=0)
    bob = await connect(bob_id, gateway=1)
    await dm(bob, ann_id)
    expires_in = 2.0
    ack = await ann.call("status:set", {"status": "on a plane", "expiresAt": iso_in(expires_in)})
    assert ack == {"status": "ok"}
    assert (await bob.wait_for("status:updated"))["status"] == "on a plane"

    # Every users worker is down when the status expires: no timer can fire anywhere.
    assert stack.processes["users"].stop() == 0
    del stack.processes["users"]
    await asyncio.sleep(expires_in + 0.5)  # let the expiry pass while nobody runs
    await bob.assert_silent("status:updated", window=0.1)
    restarted = stack.add("users", "users")
    await asyncio.to_thread(restarted.wait_ready)
    cleared = await bob.wait_for("status:updated", timeout=5)
    assert cleared == {"userId": ann_id, "status": ""}
