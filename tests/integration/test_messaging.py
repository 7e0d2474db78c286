"""The core chat path across two gateways: DMs, groups, idempotency, history, sync."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, cmid, make_group


async def test_dm_through_gateway_a_arrives_through_gateway_b(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0, name="Alice")
    alice_b = await connect(alice, gateway=1, name="Alice")  # her other device
    bob_b = await connect(bob, gateway=1)

    ack = await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "targetUserId": bob, "content": "hi bob"}
    )
    assert ack["status"] == "ok", ack
    sent = ack["message"]
    assert sent["seq"] == 1
    assert sent["senderId"] == alice
    assert sent["senderName"] == "Alice"
    assert sent["conversationId"].startswith("c_")
    assert sent["isEdited"] is False
    assert sent["isDeleted"] is False
    assert sent["reactions"] == []
    assert sent["pinned"] is False
    assert sent["createdAt"].endswith("Z")

    for socket in (bob_b, alice_b):
        got = await socket.wait_for("message:new")
        assert got == sent
    # The sending socket has the ack instead of an event.
    await alice_a.assert_silent("message:new")

    # A reply by conversation id, with reply context, goes back the other way.
    reply = await bob_b.call(
        "message:send",
        {
            "clientMessageId": cmid(),
            "conversationId": sent["conversationId"],
            "content": "hi alice",
            "replyToId": sent["id"],
        },
    )
    assert reply["status"] == "ok", reply
    assert reply["message"]["seq"] == 2
    assert reply["message"]["replyTo"] == {
        "messageId": sent["id"],
        "content": "hi bob",
        "senderId": alice,
        "senderName": "Alice",
    }
    got = await alice_a.wait_for("message:new")
    assert got["id"] == reply["message"]["id"]


async def test_group_message_reaches_every_member_socket_on_both_gateways(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await connect(alice, gateway=0)
    alice_b = await connect(alice, gateway=1)
    bob_b = await connect(bob, gateway=1)
    carol_a = await connect(carol, gateway=0)
    group = await make_group(alice_a, bob, carol)

    ack = await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "hello team"}
    )
    assert ack["status"] == "ok", ack
    assert ack["message"]["groupId"] == group
    for socket in (alice_b, bob_b, carol_a):
        got = await socket.wait_for("message:new", lambda m: m["groupId"] == group)
        assert got == ack["message"]


async def test_resend_with_same_client_message_id_yields_one_message(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    payload = {"clientMessageId": cmid(), "targetUserId": bob, "content": "once", "retryCount": 0}

    first = await alice_a.call("message:send", payload)
    second = await alice_a.call("message:send", {**payload, "retryCount": 1})
    assert first["status"] == second["status"] == "ok"
    assert second["message"] == first["message"]
    assert second["retryCount"] == 1

    await bob_b.wait_for("message:new")
    await bob_b.assert_silent("message:new")
    history = await bob_b.call("messages:history", {"targetUserId": alice})
    assert [m["id"] for m in history["messages"]] == [first["message"]["id"]]


async def test_history_pages_newest_first(connect: Connect, uid: Callable[[str], str]) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice)
    for n in range(5):
        ack = await alice_a.call(
            "message:send", {"clientMessageId": cmid(), "targetUserId": bob, "content": f"m{n}"}
        )
        assert ack["status"] == "ok"
    page = await alice_a.call("messages:history", {"targetUserId": bob, "limit": 2})
    assert [m["content"] for m in page["messages"]] == ["m4", "m3"]
    assert page["hasMore"] is True
    rest = await alice_a.call(
        "messages:history",
        {"targetUserId": bob, "beforeSeq": page["messages"][-1]["seq"], "limit": 10},
    )
    assert [m["content"] for m in rest["messages"]] == ["m2", "m1", "m0"]
    assert rest["hasMore"] is False


async def test_offline_client_catches_up_with_sync_in_seq_order(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_a = await connect(alice, gateway=0)
    bob_first = await connect(bob, gateway=1)
    group = await make_group(alice_a, bob, carol)
    await bob_first.wait_for("group:member:added", lambda e: e["userId"] == bob)
    seen = await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "seen"}
    )
    await bob_first.wait_for("message:new")
    await bob_first.close()  # Bob goes offline holding seq 1 of the group.

    sent_group = []
    for n in range(12):
        ack = await alice_a.call(
            "message:send", {"clientMessageId": cmid(), "groupId": group, "content": f"g{n}"}
        )
        sent_group.append(ack["message"])
    dm = await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "targetUserId": bob, "content": "new dm"}
    )

    bob_again = await connect(bob, gateway=0)
    ack = await bob_again.call(
        "sync", {"since": [{"groupId": group, "seq": seen["message"]["seq"]}]}
    )
    assert ack["status"] == "ok", ack
    chats = {c.get("groupId") or c.get("conversationId"): c for c in ack["chats"]}
    assert chats[group]["lastSeq"] == 13
    assert chats[group]["unread"] == 13  # nothing marked read yet
    assert chats[dm["message"]["conversationId"]]["lastSeq"] == 1

    group_batch = await bob_again.wait_for("message:batch", lambda b: b.get("groupId") == group)
    assert [m["id"] for m in group_batch["messages"]] == [m["id"] for m in sent_group]
    assert [m["seq"] for m in group_batch["messages"]] == list(range(2, 14))
    assert group_batch.get("limited", False) is False
    dm_batch = await bob_again.wait_for("message:batch", lambda b: "conversationId" in b)
    assert [m["id"] for m in dm_batch["messages"]] == [dm["message"]["id"]]
    await bob_again.assert_silent("message:batch")

    # Caught up: the same sync again sends nothing new.
    ack = await bob_again.call(
        "sync",
        {
            "since": [
                {"groupId": group, "seq": 13},
                {"conversationId": dm["message"]["conversationId"], "seq": 1},
            ]
        },
    )
    assert ack["status"] == "ok"
    await bob_again.assert_silent("message:batch")


async def test_non_member_can_neither_post_to_nor_read_a_group(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, mallory = uid("alice"), uid("bob"), uid("mallory")
    alice_a = await connect(alice)
    bob_b = await connect(bob, gateway=1)
    mallory_b = await connect(mallory, gateway=1)
    group = await make_group(alice_a, bob)
    await alice_a.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "x"}
    )
    await bob_b.wait_for("message:new")

    post = await mallory_b.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "let me in"}
    )
    assert post["status"] == "error"
    assert post["code"] == "FORBIDDEN"
    read = await mallory_b.call("messages:history", {"groupId": group})
    assert read["status"] == "error"
    assert read["code"] == "FORBIDDEN"
    get = await mallory_b.call("group:get", {"groupId": group})
    assert get["code"] == "FORBIDDEN"
    # Nothing of the refused post reached the members, and history holds one message.
    await bob_b.assert_silent("message:new")
    history = await alice_a.call("messages:history", {"groupId": group})
    assert [m["content"] for m in history["messages"]] == ["x"]
    # Mallory's sync shows no sign of the group either.
    ack = await mallory_b.call("sync", {"since": [{"groupId": group, "seq": 0}]})
    assert all(c.get("groupId") != group for c in ack["chats"])
    await mallory_b.assert_silent("message:batch")


async def test_long_polling_clients_chat_with_websocket_clients(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    polling = ChatClient("alice-polling")
    await polling.connect(stack.gateway_url(0), stack.token(alice), transports=["polling"])
    try:
        assert polling.sio.transport() == "polling"
        bob_ws = await connect(bob, gateway=1)
        ack = await polling.call(
            "message:send", {"clientMessageId": cmid(), "targetUserId": bob, "content": "poll"}
        )
        assert ack["status"] == "ok", ack
        assert (await bob_ws.wait_for("message:new"))["content"] == "poll"
        reply = await bob_ws.call(
            "message:send",
            {"clientMessageId": cmid(), "targetUserId": alice, "content": "ws"},
        )
        assert (await polling.wait_for("message:new"))["id"] == reply["message"]["id"]
    finally:
        await polling.close()


async def test_a_burst_of_sends_keeps_order_idempotency_and_one_ack_each(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    """Sends of one loop turn travel to the worker as one batch: each still gets its own
    ack, a socket's messages keep their order, and a resend inside the burst is one
    message."""
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    group = await make_group(alice_a, bob)
    payloads = [{"clientMessageId": cmid(), "groupId": group, "content": f"n{k}"} for k in range(8)]
    resend = {**payloads[3], "retryCount": 1}
    # 9 sends: within the default burst of 10 (PROTOCOL.md rate limits).
    burst = [*payloads[:5], resend, *payloads[5:]]

    acks = await asyncio.gather(*(alice_a.call("message:send", p) for p in burst))
    assert [a["status"] for a in acks] == ["ok"] * len(burst), acks
    firsts = acks[:5] + acks[6:]
    assert [a["message"]["content"] for a in firsts] == [f"n{k}" for k in range(8)]
    seqs = [a["message"]["seq"] for a in firsts]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 8
    assert acks[5]["message"] == acks[3]["message"]
    assert acks[5]["retryCount"] == 1

    got = await bob_b.wait_count("message:new", 8)
    assert sorted(m["seq"] for m in got) == seqs
    await bob_b.assert_silent("message:new")
