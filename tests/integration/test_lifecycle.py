"""Message lifecycle across two gateways: edit, delete, reactions, pins, forward, broadcast.

Every test drives real sockets on both gateways and asserts what each socket receives
(or does not), what the acks say, and what `messages:history` holds afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, cmid, make_group
from tests.integration.media_client import MediaUser, jpeg_with_gps


async def send(client: ChatClient, content: str = "hello", **target: Any) -> dict[str, Any]:
    """Send a TEXT message; the stored message from the ack."""
    ack = await client.call(
        "message:send", {"clientMessageId": cmid(), "content": content, **target}
    )
    assert ack["status"] == "ok", ack
    message: dict[str, Any] = ack["message"]
    return message


async def history(client: ChatClient, **target: Any) -> list[dict[str, Any]]:
    ack = await client.call("messages:history", {**target, "limit": 200})
    assert ack["status"] == "ok", ack
    messages: list[dict[str, Any]] = ack["messages"]
    return messages


async def joined(client: ChatClient, user_id: str, group: str) -> None:
    """Wait until the client's sockets are in the group's room."""
    await client.wait_for(
        "group:member:added", lambda e: e["userId"] == user_id and e["groupId"] == group
    )


async def test_edit_reaches_every_socket_and_keeps_versions(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0, name="Alice")
    alice_b = await connect(alice, gateway=1, name="Alice")
    bob_b = await connect(bob, gateway=1)
    original = await send(alice_a, "frist", targetUserId=bob)
    conversation = original["conversationId"]
    reply = await send(bob_b, "typo!", conversationId=conversation, replyToId=original["id"])
    await alice_a.wait_for("message:new", lambda m: m["id"] == reply["id"])
    await alice_b.wait_for("message:new", lambda m: m["id"] == reply["id"])

    payload = {"messageId": original["id"], "content": "first", "conversationId": conversation}
    ack = await alice_a.call("message:edit", payload)
    assert ack["status"] == "ok", ack
    edited = ack["message"]
    assert edited["content"] == "first"
    assert edited["isEdited"] is True
    assert edited["rev"] > original["rev"]
    for socket in (bob_b, alice_b):
        event = await socket.wait_for("message:edited")
        assert event == {
            "messageId": original["id"],
            "content": "first",
            "editedAt": edited["editedAt"],
            "conversationId": conversation,
        }
    await alice_a.assert_silent("message:edited")

    # A retried edit answers the same and emits nothing.
    again = await alice_a.call("message:edit", {**payload, "retryCount": 1})
    assert again["message"]["rev"] == edited["rev"]
    assert again["retryCount"] == 1
    await bob_b.assert_silent("message:edited")

    # Someone else's message: refused, nothing changes.
    refused = await bob_b.call("message:edit", {"messageId": original["id"], "content": "mine"})
    assert (refused["status"], refused["code"]) == ("error", "FORBIDDEN")

    seen = {m["id"]: m for m in await history(bob_b, conversationId=conversation)}
    assert seen[original["id"]]["content"] == "first"
    assert seen[original["id"]]["editedAt"] == edited["editedAt"]
    assert seen[reply["id"]]["replyTo"]["content"] == "first"
    assert seen[reply["id"]]["replyTo"]["isEdited"] is True
    versions = await bob_b.call("message:history:edits", {"messageId": original["id"]})
    assert versions["edits"] == [{"content": "frist", "editedAt": original["createdAt"]}]
    outsider = await connect(uid("eve"), gateway=0)
    hidden = await outsider.call("message:history:edits", {"messageId": original["id"]})
    assert hidden["code"] == "FORBIDDEN"


async def test_delete_for_everyone_and_for_me(connect: Connect, uid: Callable[[str], str]) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    bob_a = await connect(bob, gateway=0)  # Bob's other device
    gone = await send(alice_a, "oops", targetUserId=bob)
    conversation = gone["conversationId"]
    reply = await send(bob_b, "what?", conversationId=conversation, replyToId=gone["id"])
    other = await send(alice_a, "keep me", conversationId=conversation)
    await bob_b.wait_for("message:new", lambda m: m["id"] == other["id"])

    refused = await bob_b.call(
        "message:delete", {"messageId": gone["id"], "deleteForEveryone": True}
    )
    assert (refused["status"], refused["code"]) == ("error", "FORBIDDEN")

    ack = await alice_a.call("message:delete", {"messageId": gone["id"], "deleteForEveryone": True})
    assert ack == {"status": "ok"}
    for socket in (bob_b, bob_a):
        event = await socket.wait_for("message:deleted")
        assert event["messageId"] == gone["id"]
        assert event["deletedBy"] == alice
        assert event["deleteForEveryone"] is True
        assert event["conversationId"] == conversation
    again = await alice_a.call(
        "message:delete", {"messageId": gone["id"], "deleteForEveryone": True}
    )
    assert again == {"status": "ok"}
    await bob_b.assert_silent("message:deleted")

    seen = {m["id"]: m for m in await history(bob_b, conversationId=conversation)}
    assert seen[gone["id"]]["isDeleted"] is True
    assert "content" not in seen[gone["id"]]
    assert seen[reply["id"]]["replyTo"]["content"] == ""
    assert seen[reply["id"]]["replyTo"]["isDeleted"] is True
    dead = await alice_a.call("message:edit", {"messageId": gone["id"], "content": "x"})
    assert (dead["status"], dead["code"]) == ("error", "CONFLICT")

    # Delete for me: Bob's other socket hears it, Alice hears nothing, only Bob's views lose it.
    mine = await bob_b.call(
        "message:delete", {"messageId": other["id"], "deleteForEveryone": False}
    )
    assert mine == {"status": "ok"}
    event = await bob_a.wait_for("message:deleted", lambda e: e["messageId"] == other["id"])
    assert event["deleteForEveryone"] is False
    await bob_b.assert_silent("message:deleted")
    await alice_a.assert_silent("message:deleted")
    assert other["id"] not in {m["id"] for m in await history(bob_b, conversationId=conversation)}
    assert other["id"] in {m["id"] for m in await history(alice_a, conversationId=conversation)}


async def test_reactions_single_emoji_only_and_no_double_events(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    carol_a = await connect(carol, gateway=0)
    group = await make_group(alice_a, bob, carol)
    await joined(bob_b, bob, group)
    await joined(carol_a, carol, group)
    message = await send(alice_a, "react to me", groupId=group)
    await bob_b.wait_for("message:new")

    for text in ("lol", "👍👍", "👍 nice", " 👍", ""):
        bad = await bob_b.call("message:reaction:add", {"messageId": message["id"], "emoji": text})
        assert (bad["status"], bad["code"]) == ("error", "VALIDATION_ERROR"), (text, bad)
    await carol_a.assert_silent("message:reaction:added")

    for good in ("👍🏽", "👩‍👩‍👧", "🇫🇷"):
        ok = await bob_b.call("message:reaction:add", {"messageId": message["id"], "emoji": good})
        assert ok["status"] == "ok", (good, ok)
    events = await carol_a.wait_count("message:reaction:added", 3)
    assert [e["emoji"] for e in events] == ["👍🏽", "👩‍👩‍👧", "🇫🇷"]
    assert all(e["userId"] == bob and e["groupId"] == group for e in events)

    twice = await bob_b.call("message:reaction:add", {"messageId": message["id"], "emoji": "👍🏽"})
    assert twice["reactions"][0] == {"emoji": "👍🏽", "count": 1, "userIds": [bob]}
    await carol_a.assert_silent("message:reaction:added")

    removed = await bob_b.call(
        "message:reaction:remove", {"messageId": message["id"], "emoji": "🇫🇷"}
    )
    assert [r["emoji"] for r in removed["reactions"]] == ["👍🏽", "👩‍👩‍👧"]
    event = await carol_a.wait_for("message:reaction:removed")
    assert event == {"messageId": message["id"], "userId": bob, "emoji": "🇫🇷", "groupId": group}
    (stored,) = [m for m in await history(carol_a, groupId=group) if m["id"] == message["id"]]
    assert [r["emoji"] for r in stored["reactions"]] == ["👍🏽", "👩‍👩‍👧"]


async def test_fifty_concurrent_reactors_through_two_gateways_aggregate_exactly(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    owner = uid("owner")
    owner_a = await connect(owner, gateway=0)
    users = [uid(f"r{i:02d}") for i in range(50)]
    group = await make_group(owner_a, *users)
    sockets = await asyncio.gather(*(connect(u, gateway=i % 2) for i, u in enumerate(users)))
    message = await send(owner_a, "vote", groupId=group)

    async def react(socket: ChatClient, emoji: str, action: str = "add") -> None:
        ack = await socket.call(
            f"message:reaction:{action}", {"messageId": message["id"], "emoji": emoji}
        )
        assert ack["status"] == "ok", ack

    await asyncio.gather(*(react(s, "👍") for s in sockets), *(react(s, "❤️") for s in sockets[::2]))
    await asyncio.gather(*(react(s, "👍", "remove") for s in sockets[:10]))
    await owner_a.wait_count("message:reaction:added", 75, timeout=15)
    await owner_a.wait_count("message:reaction:removed", 10, timeout=15)

    (stored,) = [m for m in await history(owner_a, groupId=group) if m["id"] == message["id"]]
    by_emoji = {r["emoji"]: r for r in stored["reactions"]}
    assert by_emoji["👍"]["count"] == 40
    assert by_emoji["❤️"]["count"] == 25
    assert len(by_emoji["👍"]["userIds"]) == 20
    assert set(by_emoji["👍"]["userIds"]) <= set(users[10:])
    assert set(by_emoji["❤️"]["userIds"]) <= set(users[::2])


async def test_pins_admins_only_in_groups_both_parties_in_dms(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    group = await make_group(alice_a, bob)
    await joined(bob_b, bob, group)
    message = await send(bob_b, "pin me", groupId=group)

    refused = await bob_b.call("message:pin", {"messageId": message["id"], "groupId": group})
    assert (refused["status"], refused["code"]) == ("error", "FORBIDDEN")
    ack = await alice_a.call("message:pin", {"messageId": message["id"], "groupId": group})
    assert ack == {"status": "ok"}
    pinned = await bob_b.wait_for("message:pinned")
    assert pinned["messageId"] == message["id"]
    assert pinned["pinnedBy"] == alice
    assert pinned["groupId"] == group
    listed = await bob_b.call("pins:list", {"groupId": group})
    assert [m["id"] for m in listed["messages"]] == [message["id"]]
    assert listed["messages"][0]["pinned"] is True

    # Deleting a pinned message unpins it.
    await alice_a.call("message:delete", {"messageId": message["id"], "deleteForEveryone": True})
    unpinned = await bob_b.wait_for("message:unpinned")
    assert unpinned["messageId"] == message["id"]
    assert (await bob_b.call("pins:list", {"groupId": group}))["messages"] == []
    dead = await alice_a.call("message:pin", {"messageId": message["id"]})
    assert dead["code"] == "CONFLICT"

    dm = await send(alice_a, "dm pin", targetUserId=bob)
    ok = await bob_b.call("message:pin", {"messageId": dm["id"]})
    assert ok == {"status": "ok"}
    assert (await alice_a.wait_for("message:pinned"))["conversationId"] == dm["conversationId"]
    unpin = await alice_a.call("message:unpin", {"messageId": dm["id"]})
    assert unpin == {"status": "ok"}
    event = await bob_b.wait_for("message:unpinned", lambda e: e["messageId"] == dm["id"])
    assert event["unpinnedBy"] == alice


async def test_forward_needs_read_and_post_rights_and_keeps_media(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, mallory = uid("alice"), uid("bob"), uid("mallory")
    async with aiohttp.ClientSession() as http:  # a mediaUrl the media service issued
        media_url = (await MediaUser(stack, http, alice).upload("look.jpg", jpeg_with_gps()))[
            "mediaUrl"
        ]
    alice_a = await connect(alice, gateway=0, name="Alice")
    bob_b = await connect(bob, gateway=1)
    mallory_b = await connect(mallory, gateway=1)
    group = await make_group(alice_a, bob)
    await joined(bob_b, bob, group)
    media = await alice_a.call(
        "message:send",
        {
            "clientMessageId": cmid(),
            "groupId": group,
            "type": "IMAGE",
            "mediaUrl": media_url,
            "content": "look",
        },
    )
    source = media["message"]

    stolen = await mallory_b.call(
        "message:forward", {"messageId": source["id"], "targetUserId": alice}
    )
    assert (stolen["status"], stolen["code"]) == ("error", "FORBIDDEN")
    no_post = await bob_b.call(
        "message:forward",
        {"messageId": source["id"], "targetGroupId": await make_group(mallory_b, name="m")},
    )
    assert no_post["code"] == "FORBIDDEN"

    ack = await bob_b.call("message:forward", {"messageId": source["id"], "targetUserId": mallory})
    assert ack["status"] == "ok", ack
    forwarded = ack["message"]
    assert forwarded["forwardedFrom"] == {
        "messageId": source["id"],
        "senderId": alice,
        "senderName": "Alice",
    }
    assert forwarded["mediaUrl"] == media_url
    assert forwarded["type"] == "IMAGE"
    assert forwarded["senderId"] == bob
    got = await mallory_b.wait_for("message:new", lambda m: m["id"] == forwarded["id"])
    assert got == forwarded

    await alice_a.call("message:delete", {"messageId": source["id"], "deleteForEveryone": True})
    dead = await bob_b.call("message:forward", {"messageId": source["id"], "targetUserId": alice})
    assert dead["code"] == "CONFLICT"


async def test_broadcast_one_result_per_target_and_one_forbidden_target(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol, mallory = uid("alice"), uid("bob"), uid("carol"), uid("mallory")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    carol_b = await connect(carol, gateway=1)
    mallory_a = await connect(mallory, gateway=0)
    dm = await send(alice_a, "hi", targetUserId=bob)
    await bob_b.wait_for("message:new")
    group = await make_group(alice_a, carol)
    await joined(carol_b, carol, group)
    foreign = await make_group(mallory_a, name="not alice's")

    payload = {
        "content": "announcement",
        "type": "TEXT",
        "conversationIds": [dm["conversationId"]],
        "groupIds": [group, foreign],
        "clientMessageId": cmid(),
    }
    ack = await alice_a.call("message:broadcast", payload)
    assert ack["status"] == "ok", ack
    ok_dm, ok_group, refused = ack["results"]
    assert ok_dm["status"] == "ok"
    assert ok_dm["conversationId"] == dm["conversationId"]
    assert ok_group["status"] == "ok"
    assert ok_group["groupId"] == group
    assert refused == {"status": "error", "groupId": foreign, "code": "FORBIDDEN"}
    assert (await bob_b.wait_for("message:new"))["id"] == ok_dm["messageId"]
    got = await carol_b.wait_for("message:new", lambda m: m["groupId"] == group)
    assert got["id"] == ok_group["messageId"]
    assert got["content"] == "announcement"
    await mallory_a.assert_silent("message:new")

    retried = await alice_a.call("message:broadcast", {**payload, "retryCount": 1})
    assert retried["retryCount"] == 1
    assert [r.get("messageId") for r in retried["results"]] == [
        ok_dm["messageId"],
        ok_group["messageId"],
        None,
    ]
    await bob_b.assert_silent("message:new")
    await carol_b.assert_silent("message:new")

    too_many = await alice_a.call(
        "message:broadcast", {"content": "x", "conversationIds": [f"c_{i}" for i in range(51)]}
    )
    assert (too_many["status"], too_many["code"]) == ("error", "LIMIT_EXCEEDED")
