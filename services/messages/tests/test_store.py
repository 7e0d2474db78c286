"""The `MessageStore` contract, run against SQLite and MongoDB alike."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from chat_contracts import DomainError, ErrorCode
from chat_messages import domain
from chat_messages.domain import (
    ConversationTarget,
    GroupTarget,
    MessageDraft,
    PeerTarget,
    Target,
)
from chat_messages.store import Appended, MessageStore
from chat_messages.store.mongo import MongoMessageStore
from chat_messages.store.sqlite import SqliteMessageStore
from chat_testkit.stores import contract_store

T0 = datetime(2026, 1, 1, 12, 0, 0, 123_000, tzinfo=UTC)
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


async def test_sqlite_file_shared_by_two_stores(tmp_path: Path) -> None:
    """Two worker processes on one file: the write lock keeps seqs unique and gapless."""
    path = tmp_path / "shared.sqlite3"
    first, second = SqliteMessageStore(path), SqliteMessageStore(path)
    await first.open()
    await second.open()
    try:
        results = await asyncio.gather(
            *(send(s, G1) for s in [first, second] * 15),
            *(send(s, peer("amy", "bob")) for s in [first, second] * 3),
        )
        group_seqs = sorted(r.message.seq for r in results if r.message.chat_id == "g_1")
        assert group_seqs == list(range(1, 31))
        assert len(await first.conversation_ids("amy")) == 1
    finally:
        await first.close()
        await second.close()
