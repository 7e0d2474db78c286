"""The messages commands end to end over a real nats-server: acks, errors and fan-out.

The messages service under test runs in-process (`MessageHandlers` on a `Worker`); the
groups service it asks about membership is the real one, `python -m chat_groups` on the
same NATS (SQLite store), started once for the module. Groups and memberships are made
with real `cmd.groups.*` commands, so `BusGroupDirectory` is exercised for real.

The groups service fans out its own events (`group:*` on `rt.user.*` / `rt.room.*`);
the delivery recorder drops those and keeps everything else, so the messages service's
fan-out (including any stray control-only delivery) is asserted exactly.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts import limits, subjects
from chat_contracts.bus import Actor, Empty, Fanout, Reply
from chat_contracts.client import (
    ChatMute,
    GroupCreate,
    GroupMemberAdd,
    GroupMemberRemove,
    HistoryRequest,
    MessageDelete,
    MessageEdit,
    MessagePinChange,
    MessageRead,
    MessageSend,
    PinsList,
    ReactionChange,
    SyncCursor,
    SyncRequest,
)
from chat_messages import domain
from chat_messages.context import Deps
from chat_messages.domain import GroupTarget, MessageDraft
from chat_messages.groups import BusGroupDirectory
from chat_messages.handlers import build_router
from chat_messages.rules import Rules
from chat_messages.store.sqlite import SqliteMessageStore
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import ManualClock, TimeOrderedIds, iso
from chat_runtime.worker import Worker
from chat_testkit.servers import Missing, NatsServer, ServiceProcess

AMY = Actor(user_id="amy", name="Amy", avatar="https://a.example/amy.png")
BOB = Actor(user_id="bob", name="Bob")
EVE = Actor(user_id="eve", name="Eve")

#: Event prefix of the groups service's own fan-out, which this module does not assert.
GROUPS_EVENTS = "group:"

_fanout = msgspec.msgpack.Decoder(Fanout)


def _nats(workdir: Path) -> NatsServer:
    try:
        return NatsServer(workdir)
    except Missing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def lonely_nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second nats-server on which no groups worker ever runs."""
    server = _nats(tmp_path_factory.mktemp("nats-lonely"))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def groups_service(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The real groups worker on `nats_url`, once for the module (SQLite in a tmp dir)."""
    workdir = tmp_path_factory.mktemp("groups")
    data = workdir / "data"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env.update(CHAT_NATS_URL=nats_url, CHAT_STORE="sqlite", CHAT_SQLITE_DIR=str(data))
    process = ServiceProcess("groups", env, workdir, "groups")
    try:
        process.wait_ready()
        yield
    finally:
        process.stop()


@dataclass
class Delivery:
    """One fan-out as a gateway would receive it."""

    subject: str
    fanout: Fanout

    @property
    def data(self) -> Any:
        return msgspec.json.decode(self.fanout.data) if self.fanout.data else None


@dataclass
class Env:
    """Everything one test talks to."""

    bus: Bus
    store: SqliteMessageStore
    clock: ManualClock
    deliveries: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)

    async def call(self, action: str, actor: Actor, payload: Any, sid: str | None = "s1") -> Any:
        reply = await self.bus.command(subjects.MESSAGES, action, actor, payload, origin_sid=sid)
        if reply.status != "ok":
            return reply
        assert reply.result is not None
        return msgspec.msgpack.decode(reply.result)

    async def error(self, action: str, actor: Actor, payload: Any) -> Reply:
        reply = await self.call(action, actor, payload)
        assert isinstance(reply, Reply), reply
        return reply

    async def groups(self, action: str, actor: Actor, payload: Any) -> Any:
        """A command to the real groups service, which must succeed."""
        reply = await self.bus.command(subjects.GROUPS, action, actor, payload)
        assert reply.status == "ok", reply
        assert reply.result is not None
        return msgspec.msgpack.decode(reply.result)

    async def create_group(self, creator: Actor, *members: Actor, name: str = "team") -> str:
        """A new group made by the groups service; its generated id."""
        result = await self.groups(
            "create", creator, GroupCreate(name=name, member_ids=[m.user_id for m in members])
        )
        group_id: str = result["group"]["id"]
        assert group_id.startswith("g_")
        return group_id

    async def take(self, count: int) -> list[Delivery]:
        return [await asyncio.wait_for(self.deliveries.get(), 5) for _ in range(count)]

    async def assert_quiet(self) -> None:
        await self.bus.flush()
        await asyncio.sleep(0.1)
        assert self.deliveries.empty(), self.deliveries.get_nowait()


@asynccontextmanager
async def messages_service(nats_url: str, workdir: Path) -> AsyncIterator[Env]:
    """The messages worker under test, in-process, and a recorder of its fan-out."""
    bus = await Bus.connect(nats_url, name="messages-test")
    store = SqliteMessageStore(workdir / "messages.sqlite3")
    await store.open()
    clock = ManualClock()
    deps = Deps(
        store=store,
        groups=BusGroupDirectory(bus),
        publisher=Publisher(bus),
        clock=clock,
        ids=TimeOrderedIds(clock),
        rules=Rules(),
    )
    test_env = Env(bus=bus, store=store, clock=clock)

    async def collect(msg: Msg) -> None:
        fanout = _fanout.decode(msg.data)
        if fanout.event.startswith(GROUPS_EVENTS):
            return
        if fanout.room_copy is not None:
            return  # a room event's copy to new members: libs/runtime/tests/test_joins.py
        fanout.once_id = None  # (the room event's side of that copy)
        await test_env.deliveries.put(Delivery(msg.subject, fanout))

    sub = await bus.subscribe("rt.>", collect)
    worker = Worker(bus, build_router(deps))
    await worker.start()
    try:
        yield test_env
    finally:
        await worker.stop()
        await sub.unsubscribe()
        await bus.close()
        await store.close()


@pytest_asyncio.fixture
async def env(groups_service: None, nats_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    async with messages_service(nats_url, tmp_path) as test_env:
        yield test_env


@pytest_asyncio.fixture
async def team(env: Env) -> str:
    """A group made by Amy with Bob in it (Eve is not)."""
    return await env.create_group(AMY, BOB)


@pytest_asyncio.fixture
async def lonely_env(lonely_nats_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    """The messages worker on a NATS where no groups worker answers."""
    async with messages_service(lonely_nats_url, tmp_path) as test_env:
        yield test_env


def send(
    content: str = "hi",
    *,
    conversation_id: str | None = None,
    target_user_id: str | None = None,
    group_id: str | None = None,
    cmid: str | None = None,
) -> MessageSend:
    return MessageSend(
        client_message_id=cmid or uuid.uuid4().hex,
        content=content,
        conversation_id=conversation_id,
        target_user_id=target_user_id,
        group_id=group_id,
    )


def since(*cursors: tuple[str, int]) -> SyncRequest:
    return SyncRequest(
        since=[
            SyncCursor(conversation_id=c, seq=s)
            if domain.is_dm(c)
            else SyncCursor(group_id=c, seq=s)
            for c, s in cursors
        ]
    )


#: Deliveries of a DM's first message: one per participant, on its user subject.
FIRST_DM = 2


# --- send -----------------------------------------------------------------------------


async def test_first_dm_message_announces_the_room_and_reaches_both_users(env: Env) -> None:
    ack = await env.call("send", AMY, send("hello", target_user_id="bob"))
    message = ack["message"]
    assert message["seq"] == 1
    conversation_id = message["conversationId"]
    assert conversation_id.startswith("c_")
    assert message["senderAvatar"] == AMY.avatar
    assert (message["isEdited"], message["isDeleted"], message["pinned"]) == (False, False, False)
    assert message["reactions"] == []
    assert message["createdAt"] == iso(env.clock.now())

    # One delivery per participant on its own subject, carrying both the room join and
    # the message: the gateway applies the join before the event of the same delivery,
    # and no room event races the new room subscription. No join-only deliveries.
    deliveries = await env.take(FIRST_DM)
    assert sorted(d.subject for d in deliveries) == ["rt.user.amy", "rt.user.bob"]
    skips = {"rt.user.amy": "s1", "rt.user.bob": None}
    for delivery in deliveries:
        assert delivery.data == message
        assert delivery.fanout == Fanout(
            event="message:new",
            data=delivery.fanout.data,
            join=[conversation_id],
            skip_sid=skips[delivery.subject],
        )
    await env.assert_quiet()

    # Later messages of the DM go to its room, skipping the sending socket only.
    reply = await env.call(
        "send",
        BOB,
        MessageSend(
            client_message_id="r1",
            conversation_id=conversation_id,
            content="hey",
            reply_to_id=message["id"],
        ),
    )
    assert reply["message"]["seq"] == 2
    assert reply["message"]["replyTo"] == {
        "messageId": message["id"],
        "content": "hello",
        "senderId": "amy",
        "senderName": "Amy",
    }
    (delivery,) = await env.take(1)
    assert delivery.subject == f"rt.room.{conversation_id}"
    assert delivery.data == reply["message"]
    # With its seq: gateways deliver a room's messages in seq order (chat_gateway.ordering).
    assert delivery.fanout == Fanout(
        event="message:new", data=delivery.fanout.data, skip_sid="s1", seq=2
    )
    await env.assert_quiet()


async def test_resend_answers_the_first_message_and_emits_nothing(env: Env) -> None:
    first = await env.call("send", AMY, send("once", target_user_id="bob", cmid="k1"))
    await env.take(FIRST_DM)
    again = await env.call("send", AMY, send("once", target_user_id="bob", cmid="k1"))
    assert again == first
    await env.assert_quiet()


async def test_dm_refusals(env: Env) -> None:
    to_self = await env.error("send", AMY, send(target_user_id="amy"))
    assert (to_self.code, to_self.field) == ("VALIDATION_ERROR", "targetUserId")
    missing = await env.error("send", AMY, send(conversation_id="c_nope"))
    assert missing.code == "NOT_FOUND"
    first = await env.call("send", AMY, send(target_user_id="bob"))
    await env.take(FIRST_DM)
    outsider = await env.error(
        "send", EVE, send("x", conversation_id=first["message"]["conversationId"])
    )
    assert outsider.code == "FORBIDDEN"
    bad_reply = await env.error(
        "send", AMY, MessageSend(client_message_id="r", content="x", target_user_id="bob",
                                 reply_to_id="m_nope")
    )  # fmt: skip
    assert (bad_reply.code, bad_reply.field) == ("NOT_FOUND", "replyToId")
    await env.assert_quiet()


async def test_group_send_checks_membership_with_the_groups_service(env: Env, team: str) -> None:
    ack = await env.call("send", AMY, send("team", group_id=team))
    assert ack["message"]["groupId"] == team
    assert "conversationId" not in ack["message"]
    (delivery,) = await env.take(1)
    assert (delivery.subject, delivery.fanout.skip_sid) == (f"rt.room.{team}", "s1")
    assert delivery.fanout.event == "message:new"
    assert delivery.data == ack["message"]

    assert (await env.error("send", EVE, send(group_id=team))).code == "FORBIDDEN"
    assert (await env.error("send", AMY, send(group_id="g_none"))).code == "NOT_FOUND"
    await env.assert_quiet()


async def test_group_send_follows_membership_changes(env: Env, team: str) -> None:
    assert (await env.error("send", EVE, send(group_id=team))).code == "FORBIDDEN"

    await env.groups("member_add", AMY, GroupMemberAdd(group_id=team, user_id="eve"))
    ack = await env.call("send", EVE, send("joined", group_id=team))
    assert (ack["message"]["groupId"], ack["message"]["seq"]) == (team, 1)
    (delivery,) = await env.take(1)
    assert (delivery.subject, delivery.fanout.event) == (f"rt.room.{team}", "message:new")
    assert delivery.data == ack["message"]
    page = await env.call("history", EVE, HistoryRequest(group_id=team))
    assert [m["content"] for m in page["messages"]] == ["joined"]

    await env.groups("member_remove", AMY, GroupMemberRemove(group_id=team, user_id="eve"))
    assert (await env.error("send", EVE, send(group_id=team))).code == "FORBIDDEN"
    assert (await env.error("history", EVE, HistoryRequest(group_id=team))).code == "FORBIDDEN"
    await env.assert_quiet()


async def test_groups_service_unavailable_is_a_retry_ack(lonely_env: Env) -> None:
    # No groups worker on this NATS: membership cannot be checked, so the client is
    # told to retry, and nothing is stored or fanned out.
    for action, payload in [
        ("send", send("team", group_id="g_team")),
        ("history", HistoryRequest(group_id="g_team")),
        ("sync", since(("g_team", 0))),
    ]:
        reply = await lonely_env.error(action, AMY, payload)
        assert (reply.status, reply.code) == ("retry", "UNAVAILABLE"), (action, reply)
        assert (reply.retry_after or 0) > 0, (action, reply)
    stored = await lonely_env.store.messages_after(
        "g_team", "amy", after_seq=0, through_seq=10, limit=10
    )
    assert stored.messages == []
    await lonely_env.assert_quiet()


# --- history ----------------------------------------------------------------------------


async def test_history(env: Env, team: str) -> None:
    empty = await env.call("history", AMY, HistoryRequest(target_user_id="bob"))
    assert empty == {"messages": [], "hasMore": False}
    for n in range(3):
        await env.call("send", AMY, send(f"m{n}", target_user_id="bob"))
    page = await env.call("history", BOB, HistoryRequest(target_user_id="amy", limit=2))
    assert [m["content"] for m in page["messages"]] == ["m2", "m1"]
    assert page["hasMore"] is True
    refused = await env.error("history", EVE, HistoryRequest(group_id=team))
    assert refused.code == "FORBIDDEN"


# --- sync -------------------------------------------------------------------------------


async def fill_group(env: Env, group_id: str, count: int, sender: Actor = BOB) -> None:
    """Many messages straight into the store (the send path is tested above)."""
    for n in range(count):
        await env.store.append(
            GroupTarget(group_id=group_id),
            MessageDraft(
                id=f"m_{group_id}_{n:05d}",
                sender_id=sender.user_id,
                sender_name=sender.name,
                sender_avatar=None,
                client_message_id=f"{group_id}-{n}",
                type="TEXT",
                content=f"n{n}",
                media_url=None,
                reply_to_id=None,
                created_at=env.clock.now(),
            ),
            new_conversation_id="c_unused",
        )


async def test_sync_sends_the_newest_1000_in_batches_of_200(env: Env, team: str) -> None:
    await fill_group(env, team, 1_050)
    foreign = await env.create_group(EVE, BOB, name="foreign")
    await fill_group(env, foreign, 1)
    dm = await env.call("send", BOB, send("dm", target_user_id="amy"))
    await env.take(FIRST_DM)
    conversation_id = dm["message"]["conversationId"]

    # The cursor of a group Amy is not in is ignored.
    ack = await env.call("sync", AMY, since((team, 0), (foreign, 0)), sid="amy-phone")
    chats = {c.get("groupId") or c["conversationId"]: c for c in ack["chats"]}
    assert chats == {
        team: {"groupId": team, "lastSeq": 1_050, "lastRev": 1_050, "unread": 1_050},
        conversation_id: {
            "conversationId": conversation_id,
            "lastSeq": 1,
            "lastRev": 1,
            "unread": 1,
        },
    }

    batches = await env.take(6)
    assert all(b.subject == "rt.user.amy" and b.fanout.to_sid == "amy-phone" for b in batches)
    assert all(b.fanout.event == "message:batch" for b in batches)
    group_batches = [b.data for b in batches if b.data.get("groupId") == team]
    dm_batches = [b.data for b in batches if b.data.get("conversationId") == conversation_id]
    assert [len(b["messages"]) for b in group_batches] == [limits.SYNC_BATCH_SIZE] * 5
    seqs = [m["seq"] for b in group_batches for m in b["messages"]]
    assert seqs == list(range(51, 1_051))
    assert [b.get("limited", False) for b in group_batches] == [False] * 4 + [True]
    assert [m["id"] for b in dm_batches for m in b["messages"]] == [dm["message"]["id"]]
    await env.assert_quiet()


async def test_sync_sends_only_what_the_client_misses(env: Env, team: str) -> None:
    await fill_group(env, team, 5)
    ack = await env.call("sync", AMY, since((team, 3)))
    assert ack["chats"] == [{"groupId": team, "lastSeq": 5, "lastRev": 5, "unread": 5}]
    (batch,) = await env.take(1)
    assert [m["seq"] for m in batch.data["messages"]] == [4, 5]
    assert "limited" not in batch.data
    # Without a socket there is nobody to send batches to.
    await env.call("sync", AMY, since((team, 3)), sid=None)
    await env.assert_quiet()


async def test_sync_of_a_stranger_shows_nothing(env: Env, team: str) -> None:
    await fill_group(env, team, 2)
    assert await env.call("sync", EVE, since((team, 0))) == {"chats": []}
    await env.assert_quiet()


# --- read -------------------------------------------------------------------------------


async def test_bulk_read_emits_one_event_per_chat(env: Env, team: str) -> None:
    group_msgs = [(await env.call("send", BOB, send(f"g{n}", group_id=team)))["message"]
                  for n in range(3)]  # fmt: skip
    dm = (await env.call("send", BOB, send("dm", target_user_id="amy")))["message"]
    own = (await env.call("send", AMY, send("mine", group_id=team)))["message"]
    await env.take(3 + FIRST_DM + 1)

    read_at = env.clock.now() - timedelta(seconds=30)
    ids = [group_msgs[0]["id"], group_msgs[1]["id"], dm["id"], "m_unknown"]
    ack = await env.call(
        "read", AMY, MessageRead(message_ids=ids, read_at=read_at), sid="amy-laptop"
    )
    # Amy's own send already moved her group watermark to 4: only the DM message is new.
    assert ack == {"count": 1}
    (event,) = await env.take(1)
    assert event.subject == f"rt.room.{dm['conversationId']}"
    assert event.fanout.event == "message:read"
    assert event.fanout.skip_sid == "amy-laptop"
    assert event.data == {
        "messageIds": [dm["id"]],
        "readBy": "amy",
        "readAt": iso(read_at),
        "conversationId": dm["conversationId"],
    }
    await env.assert_quiet()
    assert own["seq"] == 4

    # Bob reads the group: one event for the chat, his own messages do not count.
    ack = await env.call("read", BOB, MessageRead(message_ids=[own["id"], group_msgs[2]["id"]]))
    assert ack == {"count": 1}
    (event,) = await env.take(1)
    assert event.subject == f"rt.room.{team}"
    assert event.data["messageIds"] == [own["id"], group_msgs[2]["id"]]
    assert event.data["groupId"] == team
    # Reading again changes nothing and emits nothing.
    assert await env.call("read", BOB, MessageRead(message_id=own["id"])) == {"count": 0}
    await env.assert_quiet()


async def test_read_refusals_write_nothing(env: Env, team: str) -> None:
    group_msg = (await env.call("send", BOB, send("g", group_id=team)))["message"]
    dm = (await env.call("send", AMY, send("dm", target_user_id="eve")))["message"]
    await env.take(1 + FIRST_DM)

    missing = await env.error("read", BOB, MessageRead(message_ids=["m_a", "m_b"]))
    assert (missing.code, missing.field) == ("NOT_FOUND", "messageIds")
    # Eve may read her DM but not the group: the whole call is refused.
    mixed = await env.error("read", EVE, MessageRead(message_ids=[dm["id"], group_msg["id"]]))
    assert mixed.code == "FORBIDDEN"
    await env.assert_quiet()
    ack = await env.call("read", EVE, MessageRead(message_id=dm["id"]))
    assert ack == {"count": 1}


async def test_future_read_at_is_clamped_to_now(env: Env) -> None:
    dm = (await env.call("send", BOB, send("dm", target_user_id="amy")))["message"]
    await env.take(FIRST_DM)
    future = env.clock.now() + timedelta(days=1)
    await env.call("read", AMY, MessageRead(message_id=dm["id"], read_at=future))
    (event,) = await env.take(1)
    assert event.data["readAt"] == iso(env.clock.now())


# --- mine -------------------------------------------------------------------------------


async def test_mine_lists_the_actors_dms(env: Env, team: str) -> None:
    first = (await env.call("send", AMY, send("a", target_user_id="bob")))["message"]
    second = (await env.call("send", EVE, send("b", target_user_id="amy")))["message"]
    await env.call("send", AMY, send("c", group_id=team))
    ack = await env.call("mine", AMY, Empty())
    assert sorted(ack["chatIds"]) == sorted([first["conversationId"], second["conversationId"]])
    assert domain.is_dm(ack["chatIds"][0])


# --- lifecycle: exact fan-out of each change -------------------------------------------


async def test_edit_emits_one_room_event_then_none_on_retry_or_after_the_window(
    env: Env, team: str
) -> None:
    sent = (await env.call("send", BOB, send("v1", group_id=team)))["message"]
    await env.take(1)
    env.clock.advance(minutes=14, seconds=59)
    edit = MessageEdit(message_id=sent["id"], content="v2")
    ack = await env.call("edit", BOB, edit)
    assert ack["message"]["editedAt"] == iso(env.clock.now())
    (delivery,) = await env.take(1)
    assert delivery.subject == f"rt.room.{team}"
    assert delivery.fanout.event == "message:edited"
    assert delivery.fanout.skip_sid == "s1"
    assert delivery.data == {
        "messageId": sent["id"],
        "content": "v2",
        "editedAt": ack["message"]["editedAt"],
        "groupId": team,
    }
    again = await env.call("edit", BOB, edit)
    assert again["message"] == ack["message"]
    env.clock.advance(seconds=2)  # 15:01 after createdAt
    late = await env.error("edit", BOB, MessageEdit(message_id=sent["id"], content="v3"))
    assert (late.code, late.field) == ("EDIT_WINDOW_EXPIRED", "messageId")
    other = await env.error("edit", AMY, MessageEdit(message_id=sent["id"], content="v3"))
    assert other.code == "FORBIDDEN"
    await env.assert_quiet()


async def test_delete_for_everyone_by_an_admin_after_the_window_and_for_me(
    env: Env, team: str
) -> None:
    sent = (await env.call("send", BOB, send("x", group_id=team)))["message"]
    await env.take(1)
    env.clock.advance(hours=1, seconds=1)
    expired = await env.error(
        "delete", BOB, MessageDelete(message_id=sent["id"], delete_for_everyone=True)
    )
    assert expired.code == "DELETE_WINDOW_EXPIRED"
    assert (
        await env.call(
            "delete", AMY, MessageDelete(message_id=sent["id"], delete_for_everyone=True)
        )
        == {}
    )
    (delivery,) = await env.take(1)
    assert (delivery.subject, delivery.fanout.event) == (f"rt.room.{team}", "message:deleted")
    assert delivery.data["deleteForEveryone"] is True
    assert delivery.data["deletedBy"] == "amy"
    assert (
        await env.call(
            "delete", AMY, MessageDelete(message_id=sent["id"], delete_for_everyone=True)
        )
        == {}
    )
    # For me: one delivery to the deleter's own sockets (the asking one skipped).
    assert await env.call("delete", BOB, MessageDelete(message_id=sent["id"])) == {}
    (mine,) = await env.take(1)
    assert (mine.subject, mine.fanout.skip_sid) == ("rt.user.bob", "s1")
    assert mine.data["deleteForEveryone"] is False
    assert await env.call("delete", BOB, MessageDelete(message_id=sent["id"])) == {}
    outsider = await env.error("delete", EVE, MessageDelete(message_id=sent["id"]))
    assert outsider.code == "FORBIDDEN"
    await env.assert_quiet()


async def test_reactions_pins_and_mute_emit_only_on_change(env: Env, team: str) -> None:
    sent = (await env.call("send", AMY, send("x", group_id=team)))["message"]
    await env.take(1)
    react = ReactionChange(message_id=sent["id"], emoji="🎉")
    first = await env.call("reaction_add", BOB, react)
    assert first["reactions"] == [{"emoji": "🎉", "count": 1, "userIds": ["bob"]}]
    assert [d.fanout.event for d in await env.take(1)] == ["message:reaction:added"]
    assert await env.call("reaction_add", BOB, react) == first
    text = await env.error("reaction_add", BOB, ReactionChange(message_id=sent["id"], emoji="ok"))
    assert (text.code, text.field) == ("VALIDATION_ERROR", "emoji")
    assert (await env.call("reaction_remove", BOB, react))["reactions"] == []
    assert [d.fanout.event for d in await env.take(1)] == ["message:reaction:removed"]
    assert (await env.call("reaction_remove", BOB, react))["reactions"] == []

    pin = MessagePinChange(message_id=sent["id"])
    assert (await env.error("pin", BOB, pin)).code == "FORBIDDEN"
    assert await env.call("pin", AMY, pin) == {}
    assert [d.fanout.event for d in await env.take(1)] == ["message:pinned"]
    assert await env.call("pin", AMY, pin) == {}
    listed = await env.call("pins", BOB, PinsList(group_id=team))
    assert [m["id"] for m in listed["messages"]] == [sent["id"]]

    until = env.clock.now() + timedelta(hours=1)
    mute = ChatMute(group_id=team, muted_until=until)
    assert await env.call("mute", BOB, mute) == {}
    (muted,) = await env.take(1)
    assert (muted.subject, muted.fanout.event) == ("rt.user.bob", "conversation:muted")
    assert muted.data == {"groupId": team, "mutedUntil": iso(until)}
    assert await env.call("mute", BOB, mute) == {}
    state = await env.call("sync", BOB, since((team, 1)), sid=None)
    assert state["chats"][0]["mutedUntil"] == iso(until)
    env.clock.advance(hours=1)
    state = await env.call("sync", BOB, since((team, 1)), sid=None)
    assert "mutedUntil" not in state["chats"][0]
    await env.assert_quiet()
