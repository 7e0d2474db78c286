"""The MongoDB messages store's collections, indexes and the steps its commands share.

`MongoMessageStore` (`store.mongo`) builds every command from these; see its module
docstring for the atomicity rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
from pymongo import ASCENDING, DESCENDING, TEXT, ReturnDocument
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
from chat_runtime.mongo import Document, connect_mongo


def mongo_message(doc: Document) -> StoredMessage:
    """A stored message from its document (`_id` is the message id)."""
    fields = {k: v for k, v in doc.items() if k != "_id"}
    fields["id"] = doc["_id"]
    return msgspec.convert(fields, StoredMessage)


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

    async def _next_rev(self, chat_id: str) -> int:
        counter = await self._chats.find_one_and_update(
            {"_id": chat_id},
            {"$inc": {"last_rev": 1}, "$setOnInsert": {"last_seq": 0}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if counter is None:
            raise RuntimeError("rev upsert returned no document")
        return int(counter["last_rev"])

    async def _touch(self, message: StoredMessage) -> StoredMessage:
        rev = await self._next_rev(message.chat_id)
        await self._messages.update_one({"_id": message.id}, {"$max": {"rev": rev}})
        return msgspec.structs.replace(message, rev=max(rev, message.rev))

    async def _require(self, message_id: str) -> StoredMessage:
        message = await self._message(message_id)
        if message is None:
            raise not_found()
        return message

    async def _hidden_ids(self, user_id: str, chat_id: str) -> list[str]:
        return [
            d["message_id"]
            async for d in self._hidden.find(
                {"user_id": user_id, "chat_id": chat_id}, projection={"message_id": True}
            )
        ]

    async def _reaction_rows(self, message_ids: Sequence[str]) -> dict[str, list[ReactionRow]]:
        if not message_ids:
            return {}
        found: dict[str, list[ReactionRow]] = {}
        cursor = self._reactions.find({"message_id": {"$in": list(message_ids)}}).sort(
            [("message_id", ASCENDING), ("_id", ASCENDING)]
        )
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

    async def _by_client_id(self, sender_id: str, client_message_id: str) -> StoredMessage | None:
        doc = await self._messages.find_one(
            {"sender_id": sender_id, "client_message_id": client_message_id}
        )
        return mongo_message(doc) if doc is not None else None

    async def _duplicate(self, first: StoredMessage) -> Appended:
        reply_to = await self._message(first.reply_to_id) if first.reply_to_id else None
        conversation = (
            await self._conversation(first.chat_id) if domain.is_dm(first.chat_id) else None
        )
        return Appended(message=first, reply_to=reply_to, duplicate=True, conversation=conversation)

    async def _message(self, message_id: str) -> StoredMessage | None:
        doc = await self._messages.find_one({"_id": message_id})
        return mongo_message(doc) if doc is not None else None

    async def _conversation(self, conversation_id: str) -> Conversation | None:
        doc = await self._conversations.find_one({"_id": conversation_id})
        return mongo_conversation(doc) if doc is not None else None

    async def _find_dm(self, target: PeerTarget) -> Conversation | None:
        doc = await self._conversations.find_one({"user_a": target.user_a, "user_b": target.user_b})
        return mongo_conversation(doc) if doc is not None else None

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
        conversation = mongo_conversation(doc)
        return conversation, conversation.id == new_id

    async def _replies(self, messages: Iterable[StoredMessage]) -> dict[str, StoredMessage]:
        ids = sorted({m.reply_to_id for m in messages if m.reply_to_id is not None})
        if not ids:
            return {}
        return {
            d["_id"]: mongo_message(d) async for d in self._messages.find({"_id": {"$in": ids}})
        }
