"""Storage of DM conversations, messages, per-chat sequence counters and read watermarks.

One `MessageStore` Protocol, two implementations run by one contract suite:
`SqliteMessageStore` (the embedded default) and `MongoMessageStore`.

Each store method is everything one command needs from storage, so that a command
costs one SQLite thread hop (ANCHORS.md: the hop costs more than the ~22 µs commit)
and, for the writes, one transaction. Rules that need stored data (is the actor in
this DM, is the quoted message in this chat) run inside that transaction through the
pure checks of `domain`, so nothing can change between check and write.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import msgspec
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chat_messages import domain
from chat_messages.domain import (
    ChatCounters,
    Conversation,
    ConversationTarget,
    GroupTarget,
    MessageDraft,
    Page,
    PeerTarget,
    StoredMessage,
    Target,
)
from chat_runtime.clock import iso
from chat_runtime.mongo import Document, connect_mongo
from chat_runtime.sqlite import SqliteStore


class Appended(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of `append`.

    - `duplicate`: the sender had already sent this `clientMessageId`; `message` is the
      first one and nothing was written.
    - `conversation`: the DM the message is in (None for a group).
    - `dm_created`: the DM's rooms must be announced to both participants now.
    """

    message: StoredMessage
    reply_to: StoredMessage | None
    duplicate: bool
    conversation: Conversation | None = None
    dm_created: bool = False


class ReadLookup(msgspec.Struct, frozen=True, kw_only=True):
    """Named messages that exist, and the DMs they are in (by id) for the member check."""

    messages: list[StoredMessage]
    conversations: dict[str, Conversation]


class MessageStore(Protocol):
    """What the handlers need from storage."""

    async def open(self) -> None:
        """Connect and create the schema / indexes (idempotent)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

    async def append(
        self, target: Target, draft: MessageDraft, *, new_conversation_id: str
    ) -> Appended:
        """Store a message with the chat's next seq, atomically with its side effects.

        Resolves `target` (a `PeerTarget` DM is created under `new_conversation_id`
        when missing), applies idempotency on (sender, clientMessageId), checks the
        quoted message, and moves the sender's read watermark to the new seq.
        Raises `DomainError` NOT_FOUND / FORBIDDEN from the domain checks.
        """
        ...

    async def history(
        self, target: Target, user_id: str, *, before_seq: int | None, limit: int
    ) -> Page:
        """Up to `limit` messages with seq < `before_seq`, newest first.

        A `PeerTarget` with no DM yet is an empty page; a `ConversationTarget` is
        checked for `user_id`. Group membership is the caller's check.
        """
        ...

    async def chat_counters(self, user_id: str, group_ids: Sequence[str]) -> list[ChatCounters]:
        """Every DM of `user_id` and every chat in `group_ids`: last seq and unread count.

        Chats without any message yet have `last_seq` 0.
        """
        ...

    async def messages_after(
        self, chat_id: str, *, after_seq: int, through_seq: int, limit: int
    ) -> Page:
        """Messages with `after_seq` < seq <= `through_seq`, in seq order, at most `limit`."""
        ...

    async def lookup_for_read(self, message_ids: Sequence[str]) -> ReadLookup:
        """The named messages that exist, with the DMs among their chats."""
        ...

    async def advance_reads(self, user_id: str, watermarks: Mapping[str, int]) -> dict[str, int]:
        """Raise `user_id`'s watermark of each chat to at least the given seq.

        Returns the watermarks as they were before (0 for a chat never read). A
        watermark never moves back.
        """
        ...

    async def conversation_ids(self, user_id: str) -> list[str]:
        """Ids of every DM `user_id` is in."""
        ...


# --- SQLite -------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user_a TEXT NOT NULL,
    user_b TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CHECK (user_a < user_b),
    UNIQUE (user_a, user_b)
);
CREATE INDEX IF NOT EXISTS conversations_user_b ON conversations (user_b);
CREATE TABLE IF NOT EXISTS chats (
    chat_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    chat_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    sender_avatar TEXT,
    client_message_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT,
    media_url TEXT,
    reply_to_id TEXT,
    created_at TEXT NOT NULL,
    edited_at TEXT,
    deleted_at TEXT,
    UNIQUE (chat_id, seq),
    UNIQUE (sender_id, client_message_id)
);
CREATE TABLE IF NOT EXISTS reads (
    user_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    last_read_seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, chat_id)
) WITHOUT ROWID
"""

_MESSAGE_COLUMNS = (
    "id, chat_id, seq, sender_id, sender_name, sender_avatar, client_message_id, type, "
    "content, media_url, reply_to_id, created_at, edited_at, deleted_at"
)

# Id lists go in as one JSON parameter (`json_each`): no statement per id and no
# SQLite bound-parameter limit (32,766) for a user in many chats.
_MESSAGES_BY_IDS = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN (SELECT value FROM json_each(?))"
)

_CHAT_COUNTERS = """
WITH mine(chat_id) AS (
    SELECT id FROM conversations WHERE user_a = :user
    UNION
    SELECT id FROM conversations WHERE user_b = :user
    UNION
    SELECT value FROM json_each(:groups)
)
SELECT mine.chat_id AS chat_id,
       COALESCE(chats.last_seq, 0) AS last_seq,
       (SELECT COUNT(*) FROM messages AS m
         WHERE m.chat_id = mine.chat_id
           AND m.seq > COALESCE(reads.last_read_seq, 0)
           AND m.sender_id != :user) AS unread
FROM mine
LEFT JOIN chats ON chats.chat_id = mine.chat_id
LEFT JOIN reads ON reads.user_id = :user AND reads.chat_id = mine.chat_id
ORDER BY mine.chat_id
"""

_NEXT_SEQ = """
INSERT INTO chats (chat_id, last_seq) VALUES (?, 1)
ON CONFLICT (chat_id) DO UPDATE SET last_seq = last_seq + 1
RETURNING last_seq
"""

_RAISE_WATERMARK = """
INSERT INTO reads (user_id, chat_id, last_read_seq) VALUES (?, ?, ?)
ON CONFLICT (user_id, chat_id) DO UPDATE
SET last_read_seq = max(last_read_seq, excluded.last_read_seq)
"""


def _json_list(values: Iterable[str]) -> str:
    return json.dumps(list(values))


def _message(row: sqlite3.Row) -> StoredMessage:
    return msgspec.convert(dict(zip(row.keys(), row, strict=True)), StoredMessage)


def _conversation(row: sqlite3.Row) -> Conversation:
    return msgspec.convert(dict(zip(row.keys(), row, strict=True)), Conversation)


def _opt_iso(value: Any) -> str | None:
    return iso(value) if value is not None else None


class SqliteMessageStore(SqliteStore):
    """`MessageStore` on one SQLite file (several worker processes may share it).

    Seq assignment, the insert and the sender's watermark share one `BEGIN IMMEDIATE`
    transaction: the write lock serializes writers across processes, so seqs have no
    gaps and idempotency has no race.
    """

    SCHEMA = _SCHEMA

    async def append(
        self, target: Target, draft: MessageDraft, *, new_conversation_id: str
    ) -> Appended:
        """See `MessageStore.append`."""

        def work(conn: sqlite3.Connection) -> Appended:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages"
                " WHERE sender_id = ? AND client_message_id = ?",
                (draft.sender_id, draft.client_message_id),
            ).fetchone()
            if row is not None:
                first = _message(row)
                return Appended(
                    message=first,
                    reply_to=_get_message(conn, first.reply_to_id),
                    duplicate=True,
                    conversation=_get_conversation(conn, first.chat_id),
                )
            chat_id, conversation, created = _resolve_for_write(
                conn, target, draft, new_conversation_id
            )
            reply_to = None
            if draft.reply_to_id is not None:
                original = _get_message(conn, draft.reply_to_id)
                reply_to = domain.require_reply_target(original, chat_id)
            (seq,) = conn.execute(_NEXT_SEQ, (chat_id,)).fetchone()
            message = draft.stored(chat_id, seq)
            conn.execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.id,
                    message.chat_id,
                    message.seq,
                    message.sender_id,
                    message.sender_name,
                    message.sender_avatar,
                    message.client_message_id,
                    message.type,
                    message.content,
                    message.media_url,
                    message.reply_to_id,
                    iso(message.created_at),
                    _opt_iso(message.edited_at),
                    _opt_iso(message.deleted_at),
                ),
            )
            conn.execute(_RAISE_WATERMARK, (draft.sender_id, chat_id, seq))
            return Appended(
                message=message,
                reply_to=reply_to,
                duplicate=False,
                conversation=conversation,
                dm_created=created,
            )

        return await self._db.write(work)

    async def history(
        self, target: Target, user_id: str, *, before_seq: int | None, limit: int
    ) -> Page:
        """See `MessageStore.history`."""

        def work(conn: sqlite3.Connection) -> Page:
            chat_id = _resolve_for_read(conn, target, user_id)
            if chat_id is None:
                return Page(messages=[])
            # One row past `limit` tells whether an older page exists.
            if before_seq is None:
                rows = conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ?"
                    " ORDER BY seq DESC LIMIT ?",
                    (chat_id, limit + 1),
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq < ?"
                    " ORDER BY seq DESC LIMIT ?",
                    (chat_id, before_seq, limit + 1),
                ).fetchall()
            messages = [_message(r) for r in rows[:limit]]
            return Page(
                messages=messages,
                replies=_replies(conn, messages),
                has_more=len(rows) > limit,
            )

        return await self._db.read(work)

    async def chat_counters(self, user_id: str, group_ids: Sequence[str]) -> list[ChatCounters]:
        """See `MessageStore.chat_counters`."""

        def work(conn: sqlite3.Connection) -> list[ChatCounters]:
            rows = conn.execute(
                _CHAT_COUNTERS, {"user": user_id, "groups": _json_list(group_ids)}
            ).fetchall()
            return [
                ChatCounters(chat_id=r["chat_id"], last_seq=r["last_seq"], unread=r["unread"])
                for r in rows
            ]

        return await self._db.read(work)

    async def messages_after(
        self, chat_id: str, *, after_seq: int, through_seq: int, limit: int
    ) -> Page:
        """See `MessageStore.messages_after`."""

        def work(conn: sqlite3.Connection) -> Page:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages"
                " WHERE chat_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (chat_id, after_seq, through_seq, limit),
            ).fetchall()
            messages = [_message(r) for r in rows]
            return Page(messages=messages, replies=_replies(conn, messages))

        return await self._db.read(work)

    async def lookup_for_read(self, message_ids: Sequence[str]) -> ReadLookup:
        """See `MessageStore.lookup_for_read`."""

        def work(conn: sqlite3.Connection) -> ReadLookup:
            rows = conn.execute(_MESSAGES_BY_IDS, (_json_list(message_ids),)).fetchall()
            found = {r["id"]: _message(r) for r in rows}
            messages = [found[i] for i in message_ids if i in found]
            dm_ids = {m.chat_id for m in messages if domain.is_dm(m.chat_id)}
            conversations = conn.execute(
                "SELECT id, user_a, user_b, created_at FROM conversations"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (_json_list(dm_ids),),
            ).fetchall()
            return ReadLookup(
                messages=messages,
                conversations={r["id"]: _conversation(r) for r in conversations},
            )

        return await self._db.read(work)

    async def advance_reads(self, user_id: str, watermarks: Mapping[str, int]) -> dict[str, int]:
        """See `MessageStore.advance_reads`."""
        items = list(watermarks.items())

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            before: dict[str, int] = {}
            for chat_id, seq in items:
                row = conn.execute(
                    "SELECT last_read_seq FROM reads WHERE user_id = ? AND chat_id = ?",
                    (user_id, chat_id),
                ).fetchone()
                before[chat_id] = row[0] if row is not None else 0
                conn.execute(_RAISE_WATERMARK, (user_id, chat_id, seq))
            return before

        return await self._db.write(work)

    async def conversation_ids(self, user_id: str) -> list[str]:
        """See `MessageStore.conversation_ids`."""

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id FROM conversations WHERE user_a = ?"
                " UNION SELECT id FROM conversations WHERE user_b = ? ORDER BY id",
                (user_id, user_id),
            ).fetchall()
            return [r[0] for r in rows]

        return await self._db.read(work)


def _get_message(conn: sqlite3.Connection, message_id: str | None) -> StoredMessage | None:
    if message_id is None:
        return None
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return _message(row) if row is not None else None


def _get_conversation(conn: sqlite3.Connection, chat_id: str) -> Conversation | None:
    if not domain.is_dm(chat_id):
        return None
    row = conn.execute(
        "SELECT id, user_a, user_b, created_at FROM conversations WHERE id = ?", (chat_id,)
    ).fetchone()
    return _conversation(row) if row is not None else None


def _find_dm(conn: sqlite3.Connection, target: PeerTarget) -> Conversation | None:
    row = conn.execute(
        "SELECT id, user_a, user_b, created_at FROM conversations WHERE user_a = ? AND user_b = ?",
        (target.user_a, target.user_b),
    ).fetchone()
    return _conversation(row) if row is not None else None


def _replies(
    conn: sqlite3.Connection, messages: Iterable[StoredMessage]
) -> dict[str, StoredMessage]:
    ids = {m.reply_to_id for m in messages if m.reply_to_id is not None}
    if not ids:
        return {}
    rows = conn.execute(_MESSAGES_BY_IDS, (_json_list(ids),)).fetchall()
    return {r["id"]: _message(r) for r in rows}


def _resolve_for_write(
    conn: sqlite3.Connection, target: Target, draft: MessageDraft, new_conversation_id: str
) -> tuple[str, Conversation | None, bool]:
    """(chat id, the DM if any, whether the DM was created now)."""
    if isinstance(target, GroupTarget):
        return target.group_id, None, False
    if isinstance(target, ConversationTarget):
        found = _get_conversation(conn, target.conversation_id)
        conversation = domain.require_participant(found, draft.sender_id)
        return conversation.id, conversation, False
    existing = _find_dm(conn, target)
    if existing is not None:
        return existing.id, existing, False
    created = Conversation(
        id=new_conversation_id,
        user_a=target.user_a,
        user_b=target.user_b,
        created_at=draft.created_at,
    )
    # BEGIN IMMEDIATE holds the write lock, so no other process can insert this pair
    # between the look-up above and this insert.
    conn.execute(
        "INSERT INTO conversations (id, user_a, user_b, created_at) VALUES (?, ?, ?, ?)",
        (created.id, created.user_a, created.user_b, iso(created.created_at)),
    )
    return created.id, created, True


def _resolve_for_read(conn: sqlite3.Connection, target: Target, user_id: str) -> str | None:
    """The chat id, None for a DM pair that has no conversation yet."""
    if isinstance(target, GroupTarget):
        return target.group_id
    if isinstance(target, ConversationTarget):
        found = _get_conversation(conn, target.conversation_id)
        return domain.require_participant(found, user_id).id
    existing = _find_dm(conn, target)
    return existing.id if existing is not None else None


# --- MongoDB ------------------------------------------------------------------------


def _mongo_message(doc: Document) -> StoredMessage:
    fields = {k: v for k, v in doc.items() if k != "_id"}
    fields["id"] = doc["_id"]
    return msgspec.convert(fields, StoredMessage)


def _mongo_conversation(doc: Document) -> Conversation:
    return Conversation(
        id=doc["_id"], user_a=doc["user_a"], user_b=doc["user_b"], created_at=doc["created_at"]
    )


def _message_doc(message: StoredMessage) -> Document:
    doc: Document = msgspec.structs.asdict(message)
    doc["_id"] = doc.pop("id")
    return doc


class MongoMessageStore:
    """`MessageStore` on MongoDB (PyMongo's `AsyncMongoClient`).

    Collections: `conversations` (unique sorted user pair), `chats` (the per-chat seq
    counter, `_id` = chat id), `messages` (unique (chat_id, seq) and unique
    (sender_id, client_message_id)), `reads` (one watermark per (user_id, chat_id)).
    No multi-document transactions (a standalone server has none): each step is one
    atomic single-document operation, ordered so that a failure leaves nothing a client
    could see half-done. The price: seq is taken before the insert, so two concurrent
    sends to one chat may become visible out of seq order for the few milliseconds
    between the two steps, and a crash or a lost idempotency race leaves a seq unused.
    Clients detect both by seq and fill them with `messages:history`.
    """

    def __init__(self, url: str, db_name: str) -> None:
        self._client, self._db = connect_mongo(url, db_name)
        self._conversations = self._db["conversations"]
        self._chats = self._db["chats"]
        self._messages = self._db["messages"]
        self._reads = self._db["reads"]

    async def open(self) -> None:
        """Create the indexes (idempotent: an existing identical index is kept)."""
        await self._conversations.create_index(
            [("user_a", ASCENDING), ("user_b", ASCENDING)], unique=True, name="pair"
        )
        await self._conversations.create_index([("user_b", ASCENDING)], name="user_b")
        await self._messages.create_index(
            [("chat_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="chat_seq"
        )
        await self._messages.create_index(
            [("sender_id", ASCENDING), ("client_message_id", ASCENDING)],
            unique=True,
            name="idempotency",
        )
        await self._reads.create_index(
            [("user_id", ASCENDING), ("chat_id", ASCENDING)], unique=True, name="user_chat"
        )

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    async def append(
        self, target: Target, draft: MessageDraft, *, new_conversation_id: str
    ) -> Appended:
        """See `MessageStore.append`."""
        first = await self._by_client_id(draft.sender_id, draft.client_message_id)
        if first is not None:
            return await self._duplicate(first)

        # Resolve without creating anything, check the quoted message, and only then
        # create a missing DM: a refused send must not leave an empty conversation.
        conversation: Conversation | None = None
        existing_chat: str | None
        if isinstance(target, GroupTarget):
            existing_chat = target.group_id
        elif isinstance(target, ConversationTarget):
            found = await self._conversation(target.conversation_id)
            conversation = domain.require_participant(found, draft.sender_id)
            existing_chat = conversation.id
        else:
            conversation = await self._find_dm(target)
            existing_chat = conversation.id if conversation is not None else None
        reply_to = None
        if draft.reply_to_id is not None:
            # A DM that does not exist yet has nothing to quote: NOT_FOUND.
            original = await self._message(draft.reply_to_id) if existing_chat else None
            reply_to = domain.require_reply_target(original, existing_chat or "")
        created = False
        if isinstance(target, PeerTarget) and conversation is None:
            conversation, created = await self._create_dm(target, new_conversation_id, draft)
        chat_id = conversation.id if conversation is not None else existing_chat
        if chat_id is None:
            raise RuntimeError("unreachable: only a DM pair resolves to no chat, created above")

        counter = await self._chats.find_one_and_update(
            {"_id": chat_id},
            {"$inc": {"last_seq": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if counter is None:
            raise RuntimeError("seq upsert returned no document")
        seq = int(counter["last_seq"])
        message = draft.stored(chat_id, seq)
        try:
            await self._messages.insert_one(_message_doc(message))
        except DuplicateKeyError:
            # A concurrent send with the same clientMessageId won the race after our
            # look-up. Its message is the answer; the seq we took stays unused, a gap
            # clients tolerate (they detect gaps by seq and `sync` finds nothing there).
            first = await self._by_client_id(draft.sender_id, draft.client_message_id)
            if first is None:
                raise
            return await self._duplicate(first)
        await self._reads.update_one(
            {"user_id": draft.sender_id, "chat_id": chat_id},
            {"$max": {"last_read_seq": seq}},
            upsert=True,
        )
        # A process that died between creating the DM and inserting its first message
        # left a DM nobody announced; the DM's first message announces it instead.
        announce = created or (conversation is not None and seq == 1)
        return Appended(
            message=message,
            reply_to=reply_to,
            duplicate=False,
            conversation=conversation,
            dm_created=announce,
        )

    async def history(
        self, target: Target, user_id: str, *, before_seq: int | None, limit: int
    ) -> Page:
        """See `MessageStore.history`."""
        if isinstance(target, GroupTarget):
            chat_id = target.group_id
        elif isinstance(target, ConversationTarget):
            found = await self._conversation(target.conversation_id)
            chat_id = domain.require_participant(found, user_id).id
        else:
            existing = await self._find_dm(target)
            if existing is None:
                return Page(messages=[])
            chat_id = existing.id
        query: Document = {"chat_id": chat_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        # One document past `limit` tells whether an older page exists.
        docs = await self._messages.find(query).sort("seq", DESCENDING).to_list(limit + 1)
        messages = [_mongo_message(d) for d in docs[:limit]]
        return Page(
            messages=messages, replies=await self._replies(messages), has_more=len(docs) > limit
        )

    async def chat_counters(self, user_id: str, group_ids: Sequence[str]) -> list[ChatCounters]:
        """See `MessageStore.chat_counters`."""
        chat_ids = sorted({*await self.conversation_ids(user_id), *group_ids})
        if not chat_ids:
            return []
        last: dict[str, int] = {
            d["_id"]: int(d["last_seq"]) async for d in self._chats.find({"_id": {"$in": chat_ids}})
        }
        marks: dict[str, int] = {
            d["chat_id"]: int(d["last_read_seq"])
            async for d in self._reads.find({"user_id": user_id, "chat_id": {"$in": chat_ids}})
        }

        async def unread(chat_id: str) -> int:
            watermark = marks.get(chat_id, 0)
            if last.get(chat_id, 0) <= watermark:
                return 0
            return await self._messages.count_documents(
                {"chat_id": chat_id, "seq": {"$gt": watermark}, "sender_id": {"$ne": user_id}}
            )

        counts = await asyncio.gather(*(unread(c) for c in chat_ids))
        return [
            ChatCounters(chat_id=c, last_seq=last.get(c, 0), unread=n)
            for c, n in zip(chat_ids, counts, strict=True)
        ]

    async def messages_after(
        self, chat_id: str, *, after_seq: int, through_seq: int, limit: int
    ) -> Page:
        """See `MessageStore.messages_after`."""
        docs = (
            await self._messages.find(
                {"chat_id": chat_id, "seq": {"$gt": after_seq, "$lte": through_seq}}
            )
            .sort("seq", ASCENDING)
            .to_list(limit)
        )
        messages = [_mongo_message(d) for d in docs]
        return Page(messages=messages, replies=await self._replies(messages))

    async def lookup_for_read(self, message_ids: Sequence[str]) -> ReadLookup:
        """See `MessageStore.lookup_for_read`."""
        found = {
            d["_id"]: _mongo_message(d)
            async for d in self._messages.find({"_id": {"$in": list(message_ids)}})
        }
        messages = [found[i] for i in message_ids if i in found]
        dm_ids = sorted({m.chat_id for m in messages if domain.is_dm(m.chat_id)})
        conversations = {
            d["_id"]: _mongo_conversation(d)
            async for d in self._conversations.find({"_id": {"$in": dm_ids}})
        }
        return ReadLookup(messages=messages, conversations=conversations)

    async def advance_reads(self, user_id: str, watermarks: Mapping[str, int]) -> dict[str, int]:
        """See `MessageStore.advance_reads`."""
        before: dict[str, int] = {}
        for chat_id, seq in watermarks.items():
            # `$max` moves the watermark only forward, atomically; the pre-image tells
            # the caller what was new. Upserts on the unique (user_id, chat_id) equality
            # are retried by the server on a duplicate-key race (MongoDB >= 4.2).
            old = await self._reads.find_one_and_update(
                {"user_id": user_id, "chat_id": chat_id},
                {"$max": {"last_read_seq": seq}},
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
            before[chat_id] = int(old["last_read_seq"]) if old is not None else 0
        return before

    async def conversation_ids(self, user_id: str) -> list[str]:
        """See `MessageStore.conversation_ids`."""
        cursor = self._conversations.find(
            {"$or": [{"user_a": user_id}, {"user_b": user_id}]}, projection={"_id": True}
        ).sort("_id", ASCENDING)
        return [d["_id"] async for d in cursor]

    async def _by_client_id(self, sender_id: str, client_message_id: str) -> StoredMessage | None:
        doc = await self._messages.find_one(
            {"sender_id": sender_id, "client_message_id": client_message_id}
        )
        return _mongo_message(doc) if doc is not None else None

    async def _duplicate(self, first: StoredMessage) -> Appended:
        reply_to = await self._message(first.reply_to_id) if first.reply_to_id else None
        conversation = (
            await self._conversation(first.chat_id) if domain.is_dm(first.chat_id) else None
        )
        return Appended(message=first, reply_to=reply_to, duplicate=True, conversation=conversation)

    async def _message(self, message_id: str) -> StoredMessage | None:
        doc = await self._messages.find_one({"_id": message_id})
        return _mongo_message(doc) if doc is not None else None

    async def _conversation(self, conversation_id: str) -> Conversation | None:
        doc = await self._conversations.find_one({"_id": conversation_id})
        return _mongo_conversation(doc) if doc is not None else None

    async def _find_dm(self, target: PeerTarget) -> Conversation | None:
        doc = await self._conversations.find_one({"user_a": target.user_a, "user_b": target.user_b})
        return _mongo_conversation(doc) if doc is not None else None

    async def _create_dm(
        self, target: PeerTarget, new_id: str, draft: MessageDraft
    ) -> tuple[Conversation, bool]:
        """Find or create the pair's DM; True when this call created it."""
        try:
            doc = await self._conversations.find_one_and_update(
                {"user_a": target.user_a, "user_b": target.user_b},
                {"$setOnInsert": {"_id": new_id, "created_at": draft.created_at}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            # Two first messages between the same pair at once: the other one created it.
            doc = await self._conversations.find_one(
                {"user_a": target.user_a, "user_b": target.user_b}
            )
        if doc is None:
            raise RuntimeError("DM upsert returned no document")
        conversation = _mongo_conversation(doc)
        return conversation, conversation.id == new_id

    async def _replies(self, messages: Iterable[StoredMessage]) -> dict[str, StoredMessage]:
        ids = sorted({m.reply_to_id for m in messages if m.reply_to_id is not None})
        if not ids:
            return {}
        return {
            d["_id"]: _mongo_message(d) async for d in self._messages.find({"_id": {"$in": ids}})
        }
