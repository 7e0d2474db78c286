"""Sync that carries every change, search, mute, and the edit/delete windows.

The windows are tested by restarting the messages worker with its clock moved forward
through settings (`CHAT_CLOCK_OFFSET_MS`) — never by sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, make_group
from tests.integration.test_lifecycle import history, joined, send


async def sync(client: ChatClient, since: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Any]]:
    """`sync`, with every `message:batch` it produced (they arrive before the ack)."""
    client.events.pop("message:batch", None)
    ack = await client.call("sync", {"since": since})
    assert ack["status"] == "ok", ack
    return ack, client.events.pop("message:batch", [])


async def test_offline_client_converges_on_the_servers_state_with_seq_and_rev(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    local: dict[str, dict[str, Any]] = {}
    for n in range(5):
        sender = alice_a if n % 2 == 0 else bob_b
        target = {"targetUserId": bob} if sender is alice_a else {"targetUserId": alice}
        message = await send(sender, f"m{n + 1}", **target)
        local[message["id"]] = message
    conversation = message["conversationId"]
    # Alice holds the bodies (acks and events carry them); her cursor is the newest.
    await alice_a.wait_for("message:new", lambda m: m["seq"] == 4)
    by_seq = sorted(local.values(), key=lambda m: m["seq"])
    held_seq = by_seq[-1]["seq"]
    held_rev = max(m["rev"] for m in by_seq)
    await alice_a.close()  # offline

    m1, m2, m3, m4, m5 = by_seq
    assert (await bob_b.call("message:edit", {"messageId": m2["id"], "content": "m2 v2"}))[
        "status"
    ] == "ok"
    assert (
        await bob_b.call("message:delete", {"messageId": m4["id"], "deleteForEveryone": True})
    ) == {"status": "ok"}
    for action, emoji in (("add", "👍"), ("add", "🎉"), ("remove", "🎉")):
        ack = await bob_b.call(
            f"message:reaction:{action}", {"messageId": m1["id"], "emoji": emoji}
        )
        assert ack["status"] == "ok"
    assert (await bob_b.call("message:pin", {"messageId": m3["id"]})) == {"status": "ok"}
    await send(bob_b, "m6", conversationId=conversation)
    await send(bob_b, "m7", conversationId=conversation)

    alice_again = await connect(alice, gateway=1)
    ack, batches = await sync(
        alice_again, [{"conversationId": conversation, "seq": held_seq, "rev": held_rev}]
    )
    received = [m for b in batches for m in b["messages"]]
    ids = [m["id"] for m in received]
    assert len(ids) == len(set(ids)), "a message came twice"
    assert [m["content"] for m in received[:2]] == ["m6", "m7"]  # new ones first, by seq
    changed = received[2:]
    assert [m["rev"] for m in changed] == sorted(m["rev"] for m in changed)  # then by rev
    assert {m["id"] for m in changed} == {m1["id"], m2["id"], m3["id"], m4["id"]}
    for message in received:
        local[message["id"]] = message

    server = {m["id"]: m for m in await history(alice_again, conversationId=conversation)}
    assert local == server
    assert server[m4["id"]]["isDeleted"] is True
    assert server[m1["id"]]["reactions"] == [{"emoji": "👍", "count": 1, "userIds": [bob]}]
    assert server[m3["id"]]["pinned"] is True
    assert m5["id"] not in {m["id"] for m in changed}
    (chat,) = [c for c in ack["chats"] if c.get("conversationId") == conversation]
    assert chat["lastSeq"] == 7
    assert chat["lastRev"] == max(m["rev"] for m in server.values())

    # Without a rev: new messages only (the old protocol).
    _, batches = await sync(alice_again, [{"conversationId": conversation, "seq": held_seq}])
    assert [m["content"] for b in batches for m in b["messages"]] == ["m6", "m7"]
    # Caught up on both counters: nothing at all.
    _, batches = await sync(
        alice_again, [{"conversationId": conversation, "seq": 7, "rev": chat["lastRev"]}]
    )
    assert batches == []


async def test_search_only_own_chats_never_hidden_or_deleted(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, mallory = uid("alice"), uid("bob"), uid("mallory")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    mallory_b = await connect(mallory, gateway=1)
    group = await make_group(alice_a, bob)
    await joined(bob_b, bob, group)
    pie = await send(bob_b, "Apple pie recipe", targetUserId=alice)
    crumble = await send(bob_b, "apple crumble tonight", groupId=group)
    await send(bob_b, "banana bread", groupId=group)
    hidden = await send(bob_b, "apple tart", groupId=group)
    deleted = await send(bob_b, "apple juice", groupId=group)
    await send(mallory_b, "apple secret", targetUserId=uid("nobody"))
    await alice_a.call("message:delete", {"messageId": hidden["id"], "deleteForEveryone": False})
    await bob_b.call("message:delete", {"messageId": deleted["id"], "deleteForEveryone": True})

    ack = await alice_a.call("search:messages", {"query": "appl"})
    assert ack["status"] == "ok", ack
    assert [m["id"] for m in ack["results"]] == [crumble["id"], pie["id"]]  # newest first
    assert ack["hasMore"] is False
    event = await alice_a.wait_for("search:results")
    assert event == {k: v for k, v in ack.items() if k != "status"}
    # Bob did not hide the tart: his search finds it.
    bobs = await bob_b.call("search:messages", {"query": "apple tart"})
    assert [m["id"] for m in bobs["results"]] == [hidden["id"]]

    scoped = await alice_a.call("search:messages", {"query": "apple", "groupId": group})
    assert [m["id"] for m in scoped["results"]] == [crumble["id"]]
    page = await alice_a.call("search:messages", {"query": "apple", "limit": 1})
    assert page["hasMore"] is True
    rest = await alice_a.call(
        "search:messages", {"query": "apple", "limit": 1, "cursor": page["cursor"]}
    )
    assert [m["id"] for m in rest["results"]] == [pie["id"]]
    assert rest["hasMore"] is False

    edit = await bob_b.call("message:edit", {"messageId": pie["id"], "content": "cherry pie"})
    assert edit["status"] == "ok"
    after = await alice_a.call("search:messages", {"query": "apple"})
    assert [m["id"] for m in after["results"]] == [crumble["id"]]
    cherry = await alice_a.call("search:messages", {"query": "cherry"})
    assert cherry["results"][0]["isEdited"] is True

    foreign = await mallory_b.call("search:messages", {"query": "apple", "groupId": group})
    assert foreign["code"] == "FORBIDDEN"
    too_long = await alice_a.call("search:messages", {"query": "a" * 300})
    assert too_long["code"] == "VALIDATION_ERROR"
    no_words = await alice_a.call("search:messages", {"query": "!!!"})
    assert no_words["code"] == "VALIDATION_ERROR"


async def test_mute_reaches_other_sockets_and_sync_reports_it(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, mallory = uid("alice"), uid("bob"), uid("mallory")
    alice_a = await connect(alice, gateway=0)
    alice_b = await connect(alice, gateway=1)
    mallory_b = await connect(mallory, gateway=1)
    group = await make_group(alice_a, bob)
    await joined(alice_b, alice, group)
    until = (datetime.now(UTC) + timedelta(hours=8)).replace(microsecond=0)
    stamp = until.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    ack = await alice_a.call("conversation:mute", {"groupId": group, "mutedUntil": stamp})
    assert ack == {"status": "ok"}
    assert await alice_b.wait_for("conversation:muted") == {"groupId": group, "mutedUntil": stamp}
    await alice_a.assert_silent("conversation:muted")
    state, _ = await sync(alice_b, [{"groupId": group, "seq": 0}])
    (chat,) = [c for c in state["chats"] if c.get("groupId") == group]
    assert chat["mutedUntil"] == stamp

    forever = await alice_a.call("conversation:mute", {"groupId": group})
    assert forever == {"status": "ok"}
    assert await alice_b.wait_for("conversation:muted") == {"groupId": group}
    state, _ = await sync(alice_b, [{"groupId": group, "seq": 0}])
    (chat,) = [c for c in state["chats"] if c.get("groupId") == group]
    assert chat["mutedUntil"] is None

    assert await alice_a.call("conversation:unmute", {"groupId": group}) == {"status": "ok"}
    assert await alice_b.wait_for("conversation:unmuted") == {"groupId": group}
    again = await alice_a.call("conversation:unmute", {"groupId": group})
    assert again == {"status": "ok"}
    await alice_b.assert_silent("conversation:unmuted")
    state, _ = await sync(alice_b, [{"groupId": group, "seq": 0}])
    (chat,) = [c for c in state["chats"] if c.get("groupId") == group]
    assert "mutedUntil" not in chat

    past = await alice_a.call(
        "conversation:mute", {"groupId": group, "mutedUntil": "2020-01-01T00:00:00.000Z"}
    )
    assert (past["status"], past["code"]) == ("error", "VALIDATION_ERROR")
    refused = await mallory_b.call("conversation:mute", {"groupId": group})
    assert refused["code"] == "FORBIDDEN"


@contextmanager
def messages_worker_later(stack: Stack, offset: timedelta) -> Iterator[None]:
    """The stack's messages worker replaced by one whose clock is `offset` ahead."""
    stack.processes.pop("messages").stop()
    later = stack.add(
        "messages", "messages-later", CHAT_CLOCK_OFFSET_MS=str(int(offset.total_seconds() * 1000))
    )
    try:
        later.wait_ready()
        yield
    finally:
        later.stop()
        del stack.processes["messages-later"]
        stack.add("messages", "messages").wait_ready()


async def test_windows_expire_and_mutes_end_by_the_clock(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    bob_b = await connect(bob, gateway=1)
    group = await make_group(alice_a, bob)  # Alice is the ADMIN
    await joined(bob_b, bob, group)
    first = await send(bob_b, "first", groupId=group)
    second = await send(bob_b, "second", groupId=group)
    in_half_an_hour = (datetime.now(UTC) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    muted = await alice_a.call(
        "conversation:mute", {"groupId": group, "mutedUntil": in_half_an_hour}
    )
    assert muted == {"status": "ok"}

    with messages_worker_later(stack, timedelta(minutes=61)):
        edit = await bob_b.call("message:edit", {"messageId": first["id"], "content": "late"})
        assert (edit["status"], edit["code"]) == ("error", "EDIT_WINDOW_EXPIRED")
        delete = await bob_b.call(
            "message:delete", {"messageId": first["id"], "deleteForEveryone": True}
        )
        assert (delete["status"], delete["code"]) == ("error", "DELETE_WINDOW_EXPIRED")
        # A group ADMIN may delete any message at any time; delete for me has no limit.
        by_admin = await alice_a.call(
            "message:delete", {"messageId": second["id"], "deleteForEveryone": True}
        )
        assert by_admin == {"status": "ok"}
        assert (await bob_b.wait_for("message:deleted"))["messageId"] == second["id"]
        for_me = await bob_b.call(
            "message:delete", {"messageId": first["id"], "deleteForEveryone": False}
        )
        assert for_me == {"status": "ok"}
        # The mute ended by itself: nothing fired, the time was compared on read.
        state, _ = await sync(alice_a, [])
        (chat,) = [c for c in state["chats"] if c.get("groupId") == group]
        assert "mutedUntil" not in chat

    seen = {m["id"]: m for m in await history(alice_a, groupId=group)}
    assert seen[first["id"]]["content"] == "first"
    assert seen[first["id"]]["isEdited"] is False
    assert seen[second["id"]]["isDeleted"] is True


async def test_delete_for_me_reaches_the_users_offline_device_only_by_sync(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    alice_a = await connect(alice, gateway=0)
    alice_b = await connect(alice, gateway=1)
    bob_b = await connect(bob, gateway=1)
    first = await send(bob_b, "hide me", targetUserId=alice)
    second = await send(bob_b, "keep me", targetUserId=alice)
    conversation = first["conversationId"]
    await alice_b.wait_for("message:new", lambda m: m["id"] == second["id"])
    cursor = {"conversationId": conversation, "seq": second["seq"], "rev": second["rev"]}
    await alice_b.close()

    ack = await alice_a.call("message:delete", {"messageId": first["id"]})
    assert ack == {"status": "ok"}
    await bob_b.assert_silent("message:deleted")

    alice_again = await connect(alice, gateway=1)
    _, batches = await sync(alice_again, [cursor])
    (tombstone,) = [m for b in batches for m in b["messages"]]
    assert tombstone["id"] == first["id"]
    assert tombstone["isDeleted"] is True
    assert "content" not in tombstone
    _, theirs = await sync(bob_b, [cursor])
    assert theirs == []
    ids = [m["id"] for m in await history(alice_again, conversationId=conversation)]
    assert ids == [second["id"]]
