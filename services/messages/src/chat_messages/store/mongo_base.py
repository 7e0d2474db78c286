"""The MongoDB messages store's collections, indexes and the steps its commands share.

`MongoMessageStore` (`store.mongo`) builds every command from these; see its module
docstring for the atomicity rules. The steps take the command's transaction `session`
(None outside a transaction: a read of its own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import msgspec
from pymongo import ASCENDING, DESCENDING, TEXT, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from chat_contracts import DomainError, ErrorCode
from chat_messages import domain
from chat_messages.domain import (
    Conversation,
    MessageDraft,
    Page,
    PeerTarget,
    ReactionRow,
    StoredMessage,
)
from chat_messages.store import Appended
from chat_runtime.mongo import Document, connect_mongo, in_transaction

T = TypeVar("T")


def mongo_message(doc: Document) -> StoredMessage:
    """A stored message from its document (`_id` is the message id)."""
    fields = {k: v for k, v in doc.items() if k != "_id"}
    fields["id"] = doc["_id"]
    return msgspec.convert(fields, StoredMessage)


def stored(doc: Document | None) -> StoredMessage:
    """A message this transaction has just read and then updated."""
    if doc is None:
        raise RuntimeError("a message read in this transaction is gone")
    return mongo_message(doc)


def mongo_conversation(doc: Document) -> Conversation:
    """A DM from its document."""
    return Conversation(
        id=doc["_id"], user_a=doc["user_a"], user_b=doc["user_b"], created_at=doc["created_at"]
    )


def message_doc(message: StoredMessage) -> Document:
    """The document of a stored message."""
    doc: Document = msgspec.structs.asdict(message)
    doc["_id"] = doc.pop("id")
    return doc


def not_found() -> DomainError:
    """The refusal for a message id that names nothing."""
    return DomainError(ErrorCode.NOT_FOUND, "message not found", field="messageId")


class MongoCollections:
    """The collections of the messages store, their indexes, and shared steps."""

    def __init__(self, url: str, db_name: str) -> None:
        self._client, self._db = connect_mongo(url, db_name)
        self._conversations = self._db["conversations"]
        self._chats = self._db["chats"]
        self._messages = self._db["messages"]
        self._reads = self._db["reads"]
        self._edits = self._db["edits"]
        self._reactions = self._db["reactions"]
        self._hidden = self._db["hidden"]
        self._mutes = self._db["mutes"]

    async def open(self) -> None:
        """Create the indexes and bring older documents up to date (both idempotent)."""
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
        await self._messages.create_index([("chat_id", ASCENDING), ("rev", ASCENDING)], name="rev")
        # Unread counts: each chat's range above a watermark, counted without a fetch.
        await self._messages.create_index(
            [("chat_id", ASCENDING), ("seq", ASCENDING), ("sender_id", ASCENDING)], name="unread"
        )
        await self._messages.create_index(
            [("chat_id", ASCENDING), ("pinned_at", DESCENDING)],
            name="pins",
            partialFilterExpression={"pinned_at": {"$type": "date"}},
        )
        # Language "none": no stemming and no stop words, the same words SQLite's FTS5
        # `unicode61` tokenizer sees; case and diacritics are folded by the text index.
        await self._messages.create_index(
            [("content", TEXT)], name="content_text", default_language="none"
        )
        await self._reads.create_index(
            [("user_id", ASCENDING), ("chat_id", ASCENDING)], unique=True, name="user_chat"
        )
        await self._edits.create_index(
            [("message_id", ASCENDING), ("written_at", ASCENDING)], name="message"
        )
        await self._reactions.create_index(
            [("message_id", ASCENDING), ("user_id", ASCENDING), ("emoji", ASCENDING)],
            unique=True,
            name="one_per_user_emoji",
        )
        await self._reactions.create_index(
            [("message_id", ASCENDING), ("_id", ASCENDING)], name="message_order"
        )
        await self._hidden.create_index(
            [("user_id", ASCENDING), ("message_id", ASCENDING)], unique=True, name="user_message"
        )
        await self._hidden.create_index(
            [("user_id", ASCENDING), ("chat_id", ASCENDING), ("rev", ASCENDING)], name="user_rev"
        )
        await self._mutes.create_index(
            [("user_id", ASCENDING), ("chat_id", ASCENDING)], unique=True, name="user_chat"
        )
        # Documents written before change revisions: their creation was their one
        # change, so rev = seq (the same step as SQLite's migration 2).
        await self._chats.update_many(
            {"last_rev": {"$exists": False}}, [{"$set": {"last_rev": "$last_seq"}}]
        )
        await self._messages.update_many({"rev": {"$exists": False}}, [{"$set": {"rev": "$seq"}}])

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    # --- helpers --------------------------------------------------------------------

    async def _transaction(self, work: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """Run `work` as one transaction; once more when a unique index refused a
        document that a concurrent transaction committed after this one's snapshot (the
        second run reads it: a duplicate, or a no-op)."""
        try:
            return await in_transaction(self._client, work)
        except DuplicateKeyError:
            return await in_transaction(self._client, work)

    async def _take(
        self, session: AsyncClientSession, chat_id: str, *, seq: bool = False
    ) -> tuple[int, int]:
        """The chat's next `seq` (for a new message; else the current one) and next
        `rev`, in the caller's transaction. Every command that changes a chat writes this
        document, so two of them conflict and MongoDB runs the loser again on the new
        state: numbers are used in order and a rolled-back command burns none."""
        counter = await self._chats.find_one_and_update(
            {"_id": chat_id},
            {"$inc": {"last_seq": 1 if seq else 0, "last_rev": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if counter is None:
            raise RuntimeError("counter upsert returned no document")
        return int(counter["last_seq"]), int(counter["last_rev"])

    async def _touch(self, session: AsyncClientSession, message: StoredMessage) -> StoredMessage:
        """Give `message` its chat's next `rev` (a change of its reactions)."""
        _, rev = await self._take(session, message.chat_id)
        await self._messages.update_one(
            {"_id": message.id}, {"$set": {"rev": rev}}, session=session
        )
        return msgspec.structs.replace(message, rev=rev)

    async def _require(
        self, message_id: str, session: AsyncClientSession | None = None
    ) -> StoredMessage:
        message = await self._message(message_id, session)
        if message is None:
            raise not_found()
        return message

    async def _unread(
        self, user_id: str, last: Mapping[str, tuple[int, int]], marks: Mapping[str, int]
    ) -> dict[str, int]:
        """Messages of others above `user_id`'s watermark in every chat that has any, in
        one aggregate: each `$or` branch is a range of the `unread` index, which holds
        every field the count needs (the planner prefers a plan without a fetch)."""
        ranges = [
            {
                "chat_id": chat_id,
                "seq": {"$gt": marks.get(chat_id, 0)},
                "sender_id": {"$ne": user_id},
            }
            for chat_id, (last_seq, _) in last.items()
            if last_seq > marks.get(chat_id, 0)
        ]
        if not ranges:
            return {}
        cursor = await self._messages.aggregate(
            [{"$match": {"$or": ranges}}, {"$group": {"_id": "$chat_id", "n": {"$sum": 1}}}]
        )
        return {d["_id"]: int(d["n"]) async for d in cursor}

    async def _hidden_ids(self, user_id: str, chat_id: str) -> list[str]:
        return [
            d["message_id"]
            async for d in self._hidden.find(
                {"user_id": user_id, "chat_id": chat_id}, projection={"message_id": True}
            )
        ]

    async def _reaction_rows(
        self, message_ids: Sequence[str], session: AsyncClientSession | None = None
    ) -> dict[str, list[ReactionRow]]:
        if not message_ids:
            return {}
        found: dict[str, list[ReactionRow]] = {}
        cursor = self._reactions.find(
            {"message_id": {"$in": list(message_ids)}}, session=session
        ).sort([("message_id", ASCENDING), ("_id", ASCENDING)])
        async for d in cursor:
            found.setdefault(d["message_id"], []).append(ReactionRow(d["emoji"], d["user_id"]))
        return found

    async def _page(self, messages: list[StoredMessage], *, has_more: bool = False) -> Page:
        return Page(
            messages=messages,
            replies=await self._replies(messages),
            reactions=await self._reaction_rows([m.id for m in messages]),
            has_more=has_more,
        )

    async def _by_client_id(
        self, sender_id: str, client_message_id: str, session: AsyncClientSession | None = None
    ) -> StoredMessage | None:
        doc = await self._messages.find_one(
            {"sender_id": sender_id, "client_message_id": client_message_id}, session=session
        )
        return mongo_message(doc) if doc is not None else None

    async def _duplicate(
        self, first: StoredMessage, session: AsyncClientSession | None = None
    ) -> Appended:
        reply_to = await self._message(first.reply_to_id, session) if first.reply_to_id else None
        conversation = (
            await self._conversation(first.chat_id, session)
            if domain.is_dm(first.chat_id)
            else None
        )
        return Appended(message=first, reply_to=reply_to, duplicate=True, conversation=conversation)

    async def _message(
        self, message_id: str, session: AsyncClientSession | None = None
    ) -> StoredMessage | None:
        doc = await self._messages.find_one({"_id": message_id}, session=session)
        return mongo_message(doc) if doc is not None else None

    async def _conversation(
        self, conversation_id: str, session: AsyncClientSession | None = None
    ) -> Conversation | None:
        doc = await self._conversations.find_one({"_id": conversation_id}, session=session)
        return mongo_conversation(doc) if doc is not None else None

    async def _find_dm(
        self, target: PeerTarget, session: AsyncClientSession | None = None
    ) -> Conversation | None:
        doc = await self._conversations.find_one(
            {"user_a": target.user_a, "user_b": target.user_b}, session=session
        )
        return mongo_conversation(doc) if doc is not None else None

    async def _create_dm(
        self, session: AsyncClientSession, target: PeerTarget, new_id: str, draft: MessageDraft
    ) -> Conversation:
        """The pair's new DM, in the transaction of its first message (a concurrent
        first message conflicts on the unique pair: see `_transaction`)."""
        conversation = Conversation(
            id=new_id, user_a=target.user_a, user_b=target.user_b, created_at=draft.created_at
        )
        await self._conversations.insert_one(
            {
                "_id": conversation.id,
                "user_a": conversation.user_a,
                "user_b": conversation.user_b,
                "created_at": conversation.created_at,
            },
            session=session,
        )
        return conversation

    async def _replies(self, messages: Iterable[StoredMessage]) -> dict[str, StoredMessage]:
        ids = sorted({m.reply_to_id for m in messages if m.reply_to_id is not None})
        if not ids:
            return {}
        return {
            d["_id"]: mongo_message(d) async for d in self._messages.find({"_id": {"$in": ids}})
        }
