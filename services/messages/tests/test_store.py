"""The `MessageStore` contract, run against SQLite and MongoDB alike."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from pymongo.errors import PyMongoError

from chat_contracts import DomainError, ErrorCode
from chat_messages import domain
from chat_messages.domain import (
    ConversationTarget,
    GroupTarget,
    MessageDraft,
    PeerTarget,
    ReactionRow,
    Target,
)
from chat_messages.rules import Rules, SearchCursor
from chat_messages.store import Appended, MessageStore
from chat_messages.store.mongo import MongoMessageStore
from chat_messages.store.sqlite import SqliteMessageStore
from chat_runtime.mongo import APP_NAME, ServerCode, unavailable
from chat_testkit.mongo import fail_point
from chat_testkit.stores import CANCEL_POINTS, cancelled_at, contract_store, contract_stores

T0 = datetime(2026, 1, 1, 12, 0, 0, 123_000, tzinfo=UTC)
#: The gateway's default ack deadline (CHAT_ACK_TIMEOUT_MS).
ACK_DEADLINE_S = 5.0
_counter = itertools.count()


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    """A fresh, opened store of each kind."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteMessageStore(d / "messages.sqlite3"), MongoMessageStore
    ) as opened:
        yield opened


def draft(
    sender: str = "amy",
    *,
    client_id: str | None = None,
    content: str = "hi",
    reply_to_id: str | None = None,
) -> MessageDraft:
    n = next(_counter)
    return MessageDraft(
        id=f"m_{n:08d}",
        sender_id=sender,
        sender_name=sender.title(),
        sender_avatar=None,
        client_message_id=client_id or f"cm{n}",
        type="TEXT",
        content=content,
        media_url=None,
        reply_to_id=reply_to_id,
        created_at=T0,
    )


async def send(
    store: MessageStore,
    target: Target,
    sender: str = "amy",
    *,
    client_id: str | None = None,
    content: str = "hi",
    reply_to_id: str | None = None,
) -> Appended:
    message = draft(sender, client_id=client_id, content=content, reply_to_id=reply_to_id)
    return await store.append(target, message, new_conversation_id=f"c_{next(_counter):08d}")


def peer(a: str, b: str) -> PeerTarget:
    user_a, user_b = domain.dm_pair(a, b)
    return PeerTarget(user_a=user_a, user_b=user_b)


G1 = GroupTarget(group_id="g_1")
G2 = GroupTarget(group_id="g_2")


async def test_seq_increases_per_chat_and_chats_are_independent(store: MessageStore) -> None:
    seqs: dict[str, list[int]] = {"g_1": [], "g_2": []}
    for target in (G1, G2, G1, G1, G2):
        appended = await send(store, target)
        seqs[appended.message.chat_id].append(appended.message.seq)
    dm = await send(store, peer("amy", "bob"))
    assert seqs == {"g_1": [1, 2, 3], "g_2": [1, 2]}
    assert dm.message.seq == 1


async def test_stored_message_round_trips(store: MessageStore) -> None:
    sent = await send(store, G1, content="exact text")
    page = await store.history(G1, "amy", before_seq=None, limit=10)
    assert page.messages == [sent.message]
    assert page.messages[0].created_at == T0


async def test_concurrent_sends_get_distinct_consecutive_seqs(store: MessageStore) -> None:
    results = await asyncio.gather(*(send(store, G1, f"user{i % 3}") for i in range(20)))
    assert sorted(r.message.seq for r in results) == list(range(1, 21))


async def test_idempotent_insert_returns_the_first_message(store: MessageStore) -> None:
    first = await send(store, G1, client_id="same", content="first")
    again = await send(store, G1, client_id="same", content="second")
    assert first.duplicate is False
    assert again.duplicate is True
    assert again.message == first.message
    # Another sender may use the same client id: it is unique per sender only.
    other = await send(store, G1, "bob", client_id="same")
    assert other.duplicate is False
    assert other.message.seq == 2
    page = await store.history(G1, "amy", before_seq=None, limit=10)
    assert [m.content for m in page.messages] == ["hi", "first"]


async def test_concurrent_duplicates_store_one_message(store: MessageStore) -> None:
    results = await asyncio.gather(*(send(store, G1, client_id="dup") for _ in range(5)))
    assert len({r.message.id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    page = await store.history(G1, "amy", before_seq=None, limit=10)
    assert len(page.messages) == 1


async def test_dm_find_or_create_is_unique_per_pair_whoever_starts(store: MessageStore) -> None:
    first = await send(store, peer("amy", "bob"), "amy")
    back = await send(store, peer("bob", "amy"), "bob")
    assert first.dm_created is True
    assert back.dm_created is False
    assert first.conversation is not None
    assert back.conversation == first.conversation
    assert set(first.conversation.participants) == {"amy", "bob"}
    assert back.message.chat_id == first.message.chat_id
    assert back.message.seq == 2
    other = await send(store, peer("amy", "cat"), "amy")
    assert other.message.chat_id != first.message.chat_id
    assert await store.conversation_ids("bob") == [first.message.chat_id]
    assert sorted(await store.conversation_ids("amy")) == sorted(
        [first.message.chat_id, other.message.chat_id]
    )


async def test_concurrent_first_messages_create_one_dm(store: MessageStore) -> None:
    results = await asyncio.gather(
        *(send(store, peer("amy", "bob"), sender) for sender in ["amy", "bob"] * 3)
    )
    assert len({r.message.chat_id for r in results}) == 1
    # At least one send announces the new DM (MongoDB may announce it twice when the
    # creator's message does not get seq 1; joining a room twice is harmless).
    assert any(r.dm_created for r in results)
    assert len(await store.conversation_ids("amy")) == 1


async def test_conversation_target_checks_participants(store: MessageStore) -> None:
    dm = await send(store, peer("amy", "bob"))
    target = ConversationTarget(conversation_id=dm.message.chat_id)
    by_bob = await send(store, target, "bob")
    assert by_bob.message.seq == 2
    assert by_bob.dm_created is False

    with pytest.raises(DomainError) as exc:
        await send(store, target, "eve")
    assert exc.value.code is ErrorCode.FORBIDDEN
    with pytest.raises(DomainError) as exc:
        await send(store, ConversationTarget(conversation_id="c_nope"), "amy")
    assert exc.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(DomainError) as exc:
        await store.history(target, "eve", before_seq=None, limit=10)
    assert exc.value.code is ErrorCode.FORBIDDEN
    page = await store.history(target, "bob", before_seq=None, limit=10)
    assert [m.seq for m in page.messages] == [2, 1]


async def test_reply_must_be_in_the_same_chat(store: MessageStore) -> None:
    original = await send(store, G1, content="question")
    reply = await send(store, G1, "bob", reply_to_id=original.message.id)
    assert reply.reply_to == original.message
    assert reply.message.reply_to_id == original.message.id

    elsewhere = await send(store, G2)
    with pytest.raises(DomainError) as exc:
        await send(store, G1, reply_to_id=elsewhere.message.id)
    assert (exc.value.code, exc.value.field) == (ErrorCode.NOT_FOUND, "replyToId")
    with pytest.raises(DomainError) as exc:
        await send(store, G1, reply_to_id="m_missing")
    assert exc.value.code is ErrorCode.NOT_FOUND
    # The refused sends took no seq.
    assert (await send(store, G1)).message.seq == 3

    # A reply in a DM that does not exist yet is refused without creating the DM.
    with pytest.raises(DomainError):
        await send(store, peer("amy", "dan"), reply_to_id=original.message.id)
    assert await store.conversation_ids("dan") == []


async def test_duplicate_of_a_reply_returns_its_reply_context(store: MessageStore) -> None:
    original = await send(store, G1)
    first = await send(store, G1, "bob", client_id="r", reply_to_id=original.message.id)
    again = await send(store, G1, "bob", client_id="r", reply_to_id=original.message.id)
    assert again.duplicate is True
    assert again.reply_to == first.reply_to == original.message


async def test_history_pages_newest_first(store: MessageStore) -> None:
    sent = [await send(store, G1, content=f"m{n}") for n in range(5)]
    page = await store.history(G1, "amy", before_seq=None, limit=2)
    assert [m.seq for m in page.messages] == [5, 4]
    assert page.has_more is True
    rest = await store.history(G1, "amy", before_seq=4, limit=10)
    assert [m.content for m in rest.messages] == ["m2", "m1", "m0"]
    assert rest.has_more is False
    exact = await store.history(G1, "amy", before_seq=4, limit=3)
    assert exact.has_more is False
    assert (await store.history(G1, "amy", before_seq=1, limit=10)).messages == []
    assert sent[0].message.seq == 1


async def test_history_includes_reply_originals(store: MessageStore) -> None:
    original = await send(store, G1)
    await send(store, G1, "bob", reply_to_id=original.message.id)
    page = await store.history(G1, "amy", before_seq=None, limit=1)
    assert page.replies == {original.message.id: original.message}


async def test_history_of_a_pair_without_dm_is_empty(store: MessageStore) -> None:
    page = await store.history(peer("amy", "bob"), "amy", before_seq=None, limit=10)
    assert page.messages == []
    assert page.has_more is False


async def test_watermark_only_moves_forward(store: MessageStore) -> None:
    assert await store.advance_reads("bob", {"g_1": 5, "g_2": 1}) == {"g_1": 0, "g_2": 0}
    assert await store.advance_reads("bob", {"g_1": 3}) == {"g_1": 5}
    assert await store.advance_reads("bob", {"g_1": 7}) == {"g_1": 5}
    assert await store.advance_reads("bob", {"g_1": 7}) == {"g_1": 7}
    # Another user's watermark of the same chat is separate.
    assert await store.advance_reads("cat", {"g_1": 2}) == {"g_1": 0}


async def test_unread_counts_messages_of_others_above_the_watermark(
    store: MessageStore,
) -> None:
    for sender in ["amy", "bob", "amy", "amy", "bob"]:  # seqs 1..5
        await send(store, G1, sender)
    dm = await send(store, peer("amy", "bob"), "bob")

    counters = {c.chat_id: c for c in await store.chat_counters("amy", ["g_1", "g_empty"])}
    assert set(counters) == {"g_1", "g_empty", dm.message.chat_id}
    # Amy's own sends moved her watermark to 4: only Bob's seq 5 is unread.
    assert (counters["g_1"].last_seq, counters["g_1"].unread) == (5, 1)
    assert (counters["g_empty"].last_seq, counters["g_empty"].unread) == (0, 0)
    assert counters[dm.message.chat_id].unread == 1

    bob = {c.chat_id: c for c in await store.chat_counters("bob", ["g_1"])}
    # Bob's watermark is 5 (his send); Amy's messages below it count as read.
    assert bob["g_1"].unread == 0
    assert bob[dm.message.chat_id].unread == 0

    cat = {c.chat_id: c for c in await store.chat_counters("cat", ["g_1"])}
    assert cat["g_1"].unread == 5
    await store.advance_reads("cat", {"g_1": 3})
    cat = {c.chat_id: c for c in await store.chat_counters("cat", ["g_1"])}
    assert cat["g_1"].unread == 2


async def test_chat_counters_lists_only_the_users_chats(store: MessageStore) -> None:
    await send(store, peer("amy", "bob"))
    await send(store, G1, "bob")
    assert await store.chat_counters("eve", []) == []


async def test_messages_after_a_seq_in_order(store: MessageStore) -> None:
    for n in range(10):
        await send(store, G1, content=f"m{n}")
    await send(store, G2)
    page = await store.messages_after("g_1", "amy", after_seq=3, through_seq=8, limit=100)
    assert [m.seq for m in page.messages] == [4, 5, 6, 7, 8]
    capped = await store.messages_after("g_1", "amy", after_seq=0, through_seq=10, limit=4)
    assert [m.seq for m in capped.messages] == [1, 2, 3, 4]
    assert (
        await store.messages_after("g_1", "amy", after_seq=10, through_seq=10, limit=5)
    ).messages == []


async def test_lookup_for_read(store: MessageStore) -> None:
    dm = await send(store, peer("amy", "bob"))
    group = await send(store, G1)
    lookup = await store.lookup_for_read([group.message.id, "m_missing", dm.message.id])
    assert [m.id for m in lookup.messages] == [group.message.id, dm.message.id]
    assert list(lookup.conversations) == [dm.message.chat_id]
    assert dm.conversation is not None
    assert lookup.conversations[dm.message.chat_id] == dm.conversation
    assert (await store.lookup_for_read(["m_missing"])).messages == []


async def test_sender_watermark_moves_with_each_send(store: MessageStore) -> None:
    await send(store, G1, "amy")
    await send(store, G1, "amy")
    assert await store.advance_reads("amy", {"g_1": 1}) == {"g_1": 2}


# --- no gaps: lost races, cancelled sends, two workers, injected failures ------------


@pytest_asyncio.fixture(params=["sqlite", "mongo"])
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[MessageStore, ...]]:
    """Two opened store instances on one empty database, like two messages workers."""
    async with contract_stores(
        request, tmp_path, lambda d: SqliteMessageStore(d / "messages.sqlite3"), MongoMessageStore
    ) as opened:
        yield opened


@pytest_asyncio.fixture(params=["mongo"])
async def mongo_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MessageStore]:
    """The MongoDB store only (for failures only MongoDB can inject), or the skip."""
    async with contract_store(
        request, tmp_path, lambda d: SqliteMessageStore(d / "messages.sqlite3"), MongoMessageStore
    ) as opened:
        yield opened


async def assert_gapless(store: MessageStore, target: Target, viewer: str = "amy") -> int:
    """The chat's messages have seqs 1..n and its counters promise exactly n; returns n."""
    page = await store.history(target, viewer, before_seq=None, limit=1_000)
    seqs = sorted(m.seq for m in page.messages)
    assert seqs == list(range(1, len(seqs) + 1))
    chat_id = await store.chat_of(target, viewer)
    assert chat_id is not None
    mine = [c for c in await store.chat_counters(viewer, [chat_id]) if c.chat_id == chat_id]
    assert [c.last_seq for c in mine] == [len(seqs)]
    return len(seqs)


async def test_after_concurrent_duplicates_the_next_send_gets_seq_2(store: MessageStore) -> None:
    results = await asyncio.gather(*(send(store, G1, client_id="dup") for _ in range(5)))
    assert {r.message.seq for r in results} == {1}
    (counters,) = await store.chat_counters("amy", ["g_1"])
    assert (counters.last_seq, counters.last_rev) == (1, 1)
    following = await send(store, G1)
    assert (following.message.seq, following.message.rev) == (2, 2)


async def test_concurrent_first_dm_duplicates_announce_the_dm_once(store: MessageStore) -> None:
    pair = peer("amy", "bob")
    results = await asyncio.gather(*(send(store, pair, client_id="hi") for _ in range(4)))
    assert sum(r.dm_created for r in results) == 1
    assert {r.message.seq for r in results} == {1}
    assert (await send(store, peer("bob", "amy"), "bob")).message.seq == 2


async def test_a_send_cancelled_at_any_point_leaves_no_gap(store: MessageStore) -> None:
    # A worker stopped or a send abandoned between its steps: the seq it took is used
    # by its message or was never taken.
    for i, point in enumerate(CANCEL_POINTS):
        await cancelled_at(point, send(store, G1, client_id=f"g{i}"))
        await cancelled_at(point, send(store, peer("amy", f"u{i}"), client_id=f"d{i}"))
    # One more send runs after everything still queued (SQLite's database thread).
    last = await send(store, G1)
    assert last.message.seq == await assert_gapless(store, G1)
    for i in range(len(CANCEL_POINTS)):
        dm = await send(store, peer(f"u{i}", "amy"), f"u{i}")
        # A DM exists only with its first message, which announced it.
        assert dm.dm_created == (dm.message.seq == 1)
        await assert_gapless(store, peer("amy", f"u{i}"))


async def test_two_workers_on_one_database(two_stores: tuple[MessageStore, ...]) -> None:
    one, two = two_stores
    results = await asyncio.gather(
        *(send(s, G1, f"user{i % 3}") for i, s in enumerate([one, two] * 10)),
        *(send(s, G1, client_id="dup") for s in [one, two] * 3),
        *(send(s, peer("amy", "bob")) for s in [one, two] * 3),
    )
    group = [r for r in results if r.message.chat_id == "g_1"]
    assert len({r.message.id for r in group}) == 21
    assert sum(not r.duplicate for r in group if r.message.client_message_id == "dup") == 1
    assert sum(r.dm_created for r in results) == 1
    for store in (one, two):
        assert await assert_gapless(store, G1) == 21
        assert await assert_gapless(store, peer("amy", "bob")) == 6
        assert len(await store.conversation_ids("amy")) == 1
    assert (await send(two, G1)).message.seq == 22


async def test_concurrent_reactions_at_the_limit_stay_within_it(store: MessageStore) -> None:
    message = (await send(store, G1)).message
    small = Rules(max_reaction_emojis=3)
    await store.add_reaction(message.id, "amy", "👍", now=LATER, rules=small)
    await store.add_reaction(message.id, "amy", "🎉", now=LATER, rules=small)
    outcomes = await asyncio.gather(
        *(
            store.add_reaction(message.id, f"u{i}", emoji, now=LATER, rules=small)
            for i, emoji in enumerate(["😀", "😁", "😂", "🤣"])
        ),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, DomainError)]
    assert [r.code for r in refused] == [ErrorCode.LIMIT_EXCEEDED] * 3
    rows = (await store.page_of([message.id])).reactions[message.id]
    assert len({r.emoji for r in rows}) == 3
    (counters,) = await store.chat_counters("amy", ["g_1"])
    assert counters.last_rev == 1 + 3


async def test_an_insert_that_loses_its_connection_is_run_again_without_a_gap(
    mongo_store: MessageStore, mongodb_url: str
) -> None:
    await send(mongo_store, G1)
    lost = {"failCommands": ["insert"], "closeConnection": True, "appName": APP_NAME}
    async with fail_point(mongodb_url, {"times": 1}, lost):
        sent = await send(mongo_store, G1)
    assert (sent.message.seq, sent.message.rev) == (2, 2)
    assert await assert_gapless(mongo_store, G1) == 2


async def test_a_send_that_keeps_failing_takes_no_seq_and_is_a_retry(
    mongo_store: MessageStore, mongodb_url: str
) -> None:
    await send(mongo_store, G1)
    conflict = {
        "failCommands": ["insert"],
        "errorCode": int(ServerCode.WRITE_CONFLICT),
        "errorLabels": ["TransientTransactionError"],
        "appName": APP_NAME,
    }
    started = time.monotonic()
    async with fail_point(mongodb_url, "alwaysOn", conflict):
        with pytest.raises(PyMongoError) as caught:
            await send(mongo_store, G1)
    assert time.monotonic() - started < ACK_DEADLINE_S
    assert unavailable(caught.value) is not None
    assert await assert_gapless(mongo_store, G1) == 1
    assert (await send(mongo_store, G1)).message.seq == 2


# --- change revisions and the message lifecycle -------------------------------------

RULES = Rules()
LATER = T0 + timedelta(minutes=1)


async def test_every_change_takes_the_chats_next_rev(store: MessageStore) -> None:
    first = (await send(store, G1)).message
    second = (await send(store, G1)).message
    assert (first.rev, second.rev) == (1, 2)
    edited = await store.edit(first.id, "amy", "changed", now=LATER, rules=RULES)
    assert edited.changed
    assert edited.message.rev == 3
    reacted = await store.add_reaction(second.id, "bob", "👍", now=LATER, rules=RULES)
    assert reacted.message.rev == 4
    third = (await send(store, G1)).message
    assert (third.seq, third.rev) == (3, 5)
    (counters,) = await store.chat_counters("amy", ["g_1"])
    assert (counters.last_seq, counters.last_rev) == (3, 5)


async def test_edit_keeps_every_previous_version(store: MessageStore) -> None:
    message = (await send(store, G1, content="v1")).message
    later = T0 + timedelta(minutes=2)
    await store.edit(message.id, "amy", "v2", now=LATER, rules=RULES)
    result = await store.edit(message.id, "amy", "v3", now=later, rules=RULES)
    assert result.message.content == "v3"
    assert result.message.edited_at == later
    versions = await store.edits(message.id)
    assert [(v.content, v.written_at) for v in versions] == [("v1", T0), ("v2", LATER)]
    # The same content again (a retried edit) changes nothing and takes no rev.
    again = await store.edit(message.id, "amy", "v3", now=later, rules=RULES)
    assert again.changed is False
    assert again.message.rev == result.message.rev
    assert len(await store.edits(message.id)) == 2


@pytest.mark.parametrize(
    ("editor", "moment", "code"),
    [
        ("bob", LATER, ErrorCode.FORBIDDEN),
        ("amy", T0 + timedelta(minutes=15, milliseconds=1), ErrorCode.EDIT_WINDOW_EXPIRED),
    ],
)
async def test_edit_refusals_leave_the_message_as_it_was(
    store: MessageStore, editor: str, moment: datetime, code: ErrorCode
) -> None:
    message = (await send(store, G1, content="orig")).message
    with pytest.raises(DomainError) as refused:
        await store.edit(message.id, editor, "new", now=moment, rules=RULES)
    assert refused.value.code is code
    (stored,) = (await store.page_of([message.id])).messages
    assert stored == message
    assert await store.edits(message.id) == []


async def test_delete_for_everyone_leaves_a_tombstone(store: MessageStore) -> None:
    original = (await send(store, G1, content="secret")).message
    reply = (await send(store, G1, "bob", reply_to_id=original.id)).message
    await store.add_reaction(original.id, "bob", "👍", now=LATER, rules=RULES)
    await store.set_pin(original.id, "amy", pinned=True, now=LATER, rules=RULES)
    await store.edit(original.id, "amy", "secret 2", now=LATER, rules=RULES)
    deleted = await store.delete_for_everyone(
        original.id, "amy", is_admin=False, now=LATER, rules=RULES
    )
    assert deleted.changed
    assert deleted.was_pinned
    tombstone = deleted.message
    assert tombstone.is_deleted
    assert tombstone.content is None
    assert tombstone.pinned_at is None
    page = await store.page_of([original.id, reply.id])
    assert page.messages[0].content is None
    assert page.reactions.get(original.id, []) == []
    assert page.replies[original.id].is_deleted  # the reply quotes a tombstone now
    assert await store.edits(original.id) == []
    assert (await store.pins("g_1")).messages == []
    again = await store.delete_for_everyone(
        original.id, "amy", is_admin=False, now=LATER, rules=RULES
    )
    assert again.changed is False
    assert again.message.rev == tombstone.rev


async def test_delete_rules_sender_window_and_admin(store: MessageStore) -> None:
    message = (await send(store, G1)).message
    late = T0 + timedelta(hours=1, milliseconds=1)
    with pytest.raises(DomainError) as other:
        await store.delete_for_everyone(message.id, "bob", is_admin=False, now=LATER, rules=RULES)
    assert other.value.code is ErrorCode.FORBIDDEN
    with pytest.raises(DomainError) as expired:
        await store.delete_for_everyone(message.id, "amy", is_admin=False, now=late, rules=RULES)
    assert expired.value.code is ErrorCode.DELETE_WINDOW_EXPIRED
    by_admin = await store.delete_for_everyone(
        message.id, "bob", is_admin=True, now=late, rules=RULES
    )
    assert by_admin.changed


async def test_hide_is_per_user_in_history_sync_and_search(store: MessageStore) -> None:
    kept = (await send(store, G1, content="apple pie")).message
    hidden = (await send(store, G1, content="apple tart")).message
    result = await store.hide(hidden.id, "amy", now=LATER)
    assert result.changed
    assert (await store.hide(hidden.id, "amy", now=LATER)).changed is False
    amy = await store.history(G1, "amy", before_seq=None, limit=10)
    bob = await store.history(G1, "bob", before_seq=None, limit=10)
    assert [m.id for m in amy.messages] == [kept.id]
    assert [m.id for m in bob.messages] == [hidden.id, kept.id]
    after = await store.messages_after("g_1", "amy", after_seq=0, through_seq=2, limit=10)
    assert [m.id for m in after.messages] == [kept.id]
    found = await store.search("amy", ["g_1"], ["apple"], before=None, limit=10)
    assert [m.id for m in found.messages] == [kept.id]
    changes = await store.changed_since("g_1", "amy", after_rev=2, through_seq=2, limit=10)
    assert [h.message.id for h in changes.hidden] == [hidden.id]
    assert changes.hidden[0].rev == 3
    others = await store.changed_since("g_1", "bob", after_rev=2, through_seq=2, limit=10)
    assert others.hidden == []
    assert others.page.messages == []


async def test_reactions_one_per_user_and_emoji_in_order(store: MessageStore) -> None:
    message = (await send(store, G1)).message
    await store.add_reaction(message.id, "bob", "👍", now=LATER, rules=RULES)
    await store.add_reaction(message.id, "cat", "🎉", now=LATER, rules=RULES)
    again = await store.add_reaction(message.id, "bob", "👍", now=LATER, rules=RULES)
    assert again.changed is False
    after = await store.add_reaction(message.id, "amy", "👍", now=LATER, rules=RULES)
    assert [(r.emoji, r.user_id) for r in after.reactions] == [
        ("👍", "bob"),
        ("🎉", "cat"),
        ("👍", "amy"),
    ]
    removed = await store.remove_reaction(message.id, "bob", "👍")
    assert removed.changed
    assert (await store.remove_reaction(message.id, "bob", "👍")).changed is False
    page = await store.page_of([message.id])
    assert page.reactions[message.id] == [ReactionRow("🎉", "cat"), ReactionRow("👍", "amy")]


async def test_reaction_limits(store: MessageStore) -> None:
    small = Rules(max_reaction_emojis=2, max_reactions_per_user=2)
    message = (await send(store, G1)).message
    await store.add_reaction(message.id, "amy", "👍", now=LATER, rules=small)
    await store.add_reaction(message.id, "bob", "🎉", now=LATER, rules=small)
    with pytest.raises(DomainError) as distinct:
        await store.add_reaction(message.id, "bob", "😀", now=LATER, rules=small)
    assert distinct.value.code is ErrorCode.LIMIT_EXCEEDED
    # Joining an emoji already there always works.
    await store.add_reaction(message.id, "bob", "👍", now=LATER, rules=small)
    with pytest.raises(DomainError) as per_user:
        await store.add_reaction(
            message.id, "bob", "😀", now=LATER, rules=Rules(max_reactions_per_user=2)
        )
    assert per_user.value.code is ErrorCode.LIMIT_EXCEEDED
    page = await store.page_of([message.id])
    assert len(page.reactions[message.id]) == 3


async def test_concurrent_reactions_aggregate_exactly(store: MessageStore) -> None:
    message = (await send(store, G1)).message
    users = [f"u{i:02d}" for i in range(50)]
    await asyncio.gather(
        *(store.add_reaction(message.id, u, "👍", now=LATER, rules=RULES) for u in users)
    )
    await asyncio.gather(*(store.remove_reaction(message.id, u, "👍") for u in users[:10]))
    rows = (await store.page_of([message.id])).reactions[message.id]
    assert sorted(r.user_id for r in rows) == users[10:]
    (counters,) = await store.chat_counters("amy", ["g_1"])
    assert counters.last_rev == 1 + 50 + 10


async def test_pins_limit_order_and_tombstones(store: MessageStore) -> None:
    two = Rules(max_pins=2)
    a, b, c = [(await send(store, G1, content=x)).message for x in "abc"]
    await store.set_pin(a.id, "amy", pinned=True, now=LATER, rules=two)
    await store.set_pin(b.id, "amy", pinned=True, now=LATER + timedelta(seconds=1), rules=two)
    assert (await store.set_pin(b.id, "amy", pinned=True, now=LATER, rules=two)).changed is False
    with pytest.raises(DomainError) as full:
        await store.set_pin(c.id, "amy", pinned=True, now=LATER, rules=two)
    assert full.value.code is ErrorCode.LIMIT_EXCEEDED
    assert [m.id for m in (await store.pins("g_1")).messages] == [b.id, a.id]
    unpinned = await store.set_pin(a.id, "amy", pinned=False, now=LATER, rules=two)
    assert unpinned.changed
    assert unpinned.message.pinned_at is None
    await store.delete_for_everyone(c.id, "amy", is_admin=False, now=LATER, rules=two)
    with pytest.raises(DomainError) as dead:
        await store.set_pin(c.id, "amy", pinned=True, now=LATER, rules=two)
    assert dead.value.code is ErrorCode.CONFLICT


async def test_changed_since_current_state_in_rev_order(store: MessageStore) -> None:
    m1, m2, m3 = [(await send(store, G1, content=f"m{i}")).message for i in range(3)]
    await store.add_reaction(m2.id, "bob", "👍", now=LATER, rules=RULES)  # rev 4
    await store.edit(m1.id, "amy", "m0 edited", now=LATER, rules=RULES)  # rev 5
    await store.delete_for_everyone(m2.id, "amy", is_admin=False, now=LATER, rules=RULES)  # 6
    new = (await send(store, G1)).message  # seq 4, rev 7
    changes = await store.changed_since("g_1", "cat", after_rev=3, through_seq=3, limit=10)
    assert [(m.id, m.rev) for m in changes.page.messages] == [(m1.id, 5), (m2.id, 6)]
    assert changes.page.messages[0].content == "m0 edited"
    assert changes.page.messages[1].is_deleted
    assert new.id not in {m.id for m in changes.page.messages}
    capped = await store.changed_since("g_1", "cat", after_rev=3, through_seq=3, limit=1)
    assert capped.limited is True
    assert len(capped.page.messages) == 1
    assert m3.rev == 3


async def test_search_words_prefix_scope_and_paging(store: MessageStore) -> None:
    first = (await send(store, G1, content="Café meeting at noon")).message
    second = (await send(store, G1, content="the meeting moved")).message
    other_chat = (await send(store, G2, content="meeting elsewhere")).message
    assert other_chat.chat_id == "g_2"
    found = await store.search("amy", ["g_1"], ["meet"], before=None, limit=10)
    assert {m.id for m in found.messages} == {first.id, second.id}
    assert (
        await store.search("amy", ["g_1"], ["cafe", "meeting"], before=None, limit=10)
    ).messages[0].id == first.id
    page1 = await store.search("amy", ["g_1", "g_2"], ["meeting"], before=None, limit=2)
    assert page1.has_more is True
    last = page1.messages[-1]
    cursor = SearchCursor(created_at=last.created_at, message_id=last.id)
    page2 = await store.search("amy", ["g_1", "g_2"], ["meeting"], before=cursor, limit=2)
    assert page2.has_more is False
    every = [m.id for m in page1.messages + page2.messages]
    assert sorted(every) == sorted([first.id, second.id, other_chat.id])
    assert every == sorted(every, reverse=True)  # same createdAt: newest id first
    # Edits and deletes keep the index in step.
    await store.edit(second.id, "amy", "the call moved", now=LATER, rules=RULES)
    await store.delete_for_everyone(first.id, "amy", is_admin=False, now=LATER, rules=RULES)
    assert (await store.search("amy", ["g_1"], ["meeting"], before=None, limit=10)).messages == []
    assert [
        m.id for m in (await store.search("amy", ["g_1"], ["call"], before=None, limit=10)).messages
    ] == [second.id]


async def test_mute_until_forever_and_clear(store: MessageStore) -> None:
    await send(store, G1)
    until = T0 + timedelta(hours=8)
    assert await store.set_mute("amy", "g_1", until) is True
    assert await store.set_mute("amy", "g_1", until) is False
    (counters,) = await store.chat_counters("amy", ["g_1"])
    assert (counters.muted, counters.muted_until) == (True, until)
    assert await store.set_mute("amy", "g_1", None) is True
    (forever,) = await store.chat_counters("amy", ["g_1"])
    assert (forever.muted, forever.muted_until) == (True, None)
    (bob,) = await store.chat_counters("bob", ["g_1"])
    assert bob.muted is False
    assert await store.clear_mute("amy", "g_1") is True
    assert await store.clear_mute("amy", "g_1") is False
    (cleared,) = await store.chat_counters("amy", ["g_1"])
    assert cleared.muted is False


async def test_muted_among_for_push(store: MessageStore) -> None:
    await store.set_mute("amy", "g_1", T0 + timedelta(hours=1))
    await store.set_mute("bob", "g_1", None)
    await store.set_mute("cat", "g_2", None)
    users = ["amy", "bob", "cat", "dan"]
    assert await store.muted_among("g_1", users, T0) == ["amy", "bob"]
    assert await store.muted_among("g_1", users, T0 + timedelta(hours=2)) == ["bob"]
    assert await store.muted_among("g_2", ["amy"], T0) == []


async def test_forwarded_from_round_trips(store: MessageStore) -> None:
    source = (await send(store, G1, content="fwd me")).message
    fwd = msgspec.structs.replace(
        draft("bob"),
        fwd_message_id=source.id,
        fwd_sender_id="amy",
        fwd_sender_name="Amy",
    )
    appended = await store.append(G2, fwd, new_conversation_id="c_unused")
    (stored,) = (await store.page_of([appended.message.id])).messages
    assert (stored.fwd_message_id, stored.fwd_sender_id, stored.fwd_sender_name) == (
        source.id,
        "amy",
        "Amy",
    )


async def test_search_sees_every_message_across_index_chunks(store: MessageStore) -> None:
    # More messages than one indexing chunk (256, SQLite): some are indexed by the
    # appends, the rest by the search itself; edits and deletes on both sides.
    sent = [(await send(store, G1, content=f"note {i} alpha")).message for i in range(300)]
    early, late = sent[10], sent[290]
    for message in (early, late):
        await store.edit(message.id, "amy", "renamed beta", now=LATER, rules=RULES)
    await store.delete_for_everyone(sent[20].id, "amy", is_admin=False, now=LATER, rules=RULES)
    await store.delete_for_everyone(sent[280].id, "amy", is_admin=False, now=LATER, rules=RULES)
    alpha = await store.search("amy", ["g_1"], ["alpha"], before=None, limit=100)
    total = len(alpha.messages)
    cursor_page = alpha
    while cursor_page.has_more:
        last = cursor_page.messages[-1]
        cursor = SearchCursor(created_at=last.created_at, message_id=last.id)
        cursor_page = await store.search("amy", ["g_1"], ["alpha"], before=cursor, limit=100)
        total += len(cursor_page.messages)
    assert total == 296
    beta = await store.search("amy", ["g_1"], ["beta"], before=None, limit=10)
    assert [m.id for m in beta.messages] == [late.id, early.id]
    newer = (await send(store, G1, content="fresh alpha")).message
    first = await store.search("amy", ["g_1"], ["alpha"], before=None, limit=1)
    assert [m.id for m in first.messages] == [newer.id]
