"""`MessageStore` on MongoDB (PyMongo's `AsyncMongoClient`).

Collections: `conversations` (unique sorted user pair), `chats` (the per-chat `seq`
and `rev` counters, `_id` = chat id), `messages` (unique (chat_id, seq), unique
(sender_id, client_message_id), (chat_id, rev), a text index on `content`), `edits`
(previous contents), `reactions` (unique (message_id, user_id, emoji)), `hidden`
(delete for me, unique (user_id, message_id)), `mutes` (unique (user_id, chat_id)) and
`reads` (one watermark per (user_id, chat_id)).

No multi-document transactions (a standalone server has none): each step is one
atomic single-document operation, ordered so that a failure leaves nothing a client
could see half-done. The price: a counter is taken before the write it numbers, so
two concurrent changes to one chat may become visible out of order for the few
milliseconds between the two steps, and a crash or a lost race leaves a number unused.
Clients detect both by seq/rev and `sync` fills them. A message's `rev` only moves
forward (`$max`). Reaction aggregates are always exact (they are counted from the
unique reaction documents); the 50-emoji and 20-per-user limits are checked before
the insert, so two concurrent adds at the limit may pass it by one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from chat_messages import domain
from chat_messages import rules as policy
from chat_messages.domain import (
    ChatCounters,
    Conversation,
    ConversationTarget,
    GroupTarget,
    HiddenMessage,
    MessageDraft,
    Page,
    PeerTarget,
    ReactionRow,
    Target,
)
from chat_messages.rules import Rules, SearchCursor
from chat_messages.store import Appended, Changed, Changes, EditVersion, ReadLookup
from chat_messages.store.mongo_base import (
    MongoCollections,
    message_doc,
    mongo_conversation,
    mongo_message,
)
from chat_runtime.mongo import Document


class MongoMessageStore(MongoCollections):
    """`MessageStore` on MongoDB (see the module docstring for its atomicity)."""

    # --- new messages ---------------------------------------------------------------

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
            {"$inc": {"last_seq": 1, "last_rev": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if counter is None:
            raise RuntimeError("seq upsert returned no document")
        message = draft.stored(chat_id, int(counter["last_seq"]), int(counter["last_rev"]))
        try:
            await self._messages.insert_one(message_doc(message))
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
            {"$max": {"last_read_seq": message.seq}},
            upsert=True,
        )
        # A process that died between creating the DM and inserting its first message
        # left a DM nobody announced; the DM's first message announces it instead.
        announce = created or (conversation is not None and message.seq == 1)
        return Appended(
            message=message,
            reply_to=reply_to,
            duplicate=False,
            conversation=conversation,
            dm_created=announce,
        )

    # --- reads ----------------------------------------------------------------------

    async def history(
        self, target: Target, user_id: str, *, before_seq: int | None, limit: int
    ) -> Page:
        """See `MessageStore.history`."""
        chat_id = await self.chat_of(target, user_id)
        if chat_id is None:
            return Page(messages=[])
        query: Document = {"chat_id": chat_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        hidden = await self._hidden_ids(user_id, chat_id)
        if hidden:
            query["_id"] = {"$nin": hidden}
        # One document past `limit` tells whether an older page exists.
        docs = await self._messages.find(query).sort("seq", DESCENDING).to_list(limit + 1)
        messages = [mongo_message(d) for d in docs[:limit]]
        return await self._page(messages, has_more=len(docs) > limit)

    async def chat_of(self, target: Target, user_id: str) -> str | None:
        """See `MessageStore.chat_of`."""
        if isinstance(target, GroupTarget):
            return target.group_id
        if isinstance(target, ConversationTarget):
            found = await self._conversation(target.conversation_id)
            return domain.require_participant(found, user_id).id
        existing = await self._find_dm(target)
        return existing.id if existing is not None else None

    async def chat_counters(self, user_id: str, group_ids: Sequence[str]) -> list[ChatCounters]:
        """See `MessageStore.chat_counters`."""
        chat_ids = sorted({*await self.conversation_ids(user_id), *group_ids})
        if not chat_ids:
            return []
        last: dict[str, tuple[int, int]] = {
            d["_id"]: (int(d["last_seq"]), int(d["last_rev"] if "last_rev" in d else d["last_seq"]))
            async for d in self._chats.find({"_id": {"$in": chat_ids}})
        }
        marks: dict[str, int] = {
            d["chat_id"]: int(d["last_read_seq"])
            async for d in self._reads.find({"user_id": user_id, "chat_id": {"$in": chat_ids}})
        }
        mutes: dict[str, datetime | None] = {
            d["chat_id"]: d.get("muted_until")
            async for d in self._mutes.find({"user_id": user_id, "chat_id": {"$in": chat_ids}})
        }

        async def unread(chat_id: str) -> int:
            watermark = marks.get(chat_id, 0)
            if last.get(chat_id, (0, 0))[0] <= watermark:
                return 0
            return await self._messages.count_documents(
                {"chat_id": chat_id, "seq": {"$gt": watermark}, "sender_id": {"$ne": user_id}}
            )

        counts = await asyncio.gather(*(unread(c) for c in chat_ids))
        return [
            ChatCounters(
                chat_id=c,
                last_seq=last.get(c, (0, 0))[0],
                last_rev=last.get(c, (0, 0))[1],
                unread=n,
                muted=c in mutes,
                muted_until=mutes.get(c),
            )
            for c, n in zip(chat_ids, counts, strict=True)
        ]

    async def messages_after(
        self, chat_id: str, viewer_id: str, *, after_seq: int, through_seq: int, limit: int
    ) -> Page:
        """See `MessageStore.messages_after`."""
        query: Document = {"chat_id": chat_id, "seq": {"$gt": after_seq, "$lte": through_seq}}
        hidden = await self._hidden_ids(viewer_id, chat_id)
        if hidden:
            query["_id"] = {"$nin": hidden}
        docs = await self._messages.find(query).sort("seq", ASCENDING).to_list(limit)
        return await self._page([mongo_message(d) for d in docs])

    async def changed_since(
        self, chat_id: str, viewer_id: str, *, after_rev: int, through_seq: int, limit: int
    ) -> Changes:
        """See `MessageStore.changed_since`."""
        query: Document = {
            "chat_id": chat_id,
            "rev": {"$gt": after_rev},
            "seq": {"$lte": through_seq},
        }
        hidden_ids = await self._hidden_ids(viewer_id, chat_id)
        if hidden_ids:
            query["_id"] = {"$nin": hidden_ids}
        docs = await self._messages.find(query).sort("rev", ASCENDING).to_list(limit + 1)
        hides = (
            await self._hidden.find(
                {"user_id": viewer_id, "chat_id": chat_id, "rev": {"$gt": after_rev}}
            )
            .sort("rev", ASCENDING)
            .to_list(limit)
        )
        originals = {
            d["_id"]: mongo_message(d)
            async for d in self._messages.find(
                {"_id": {"$in": [h["message_id"] for h in hides]}, "seq": {"$lte": through_seq}}
            )
        }
        hidden = [
            HiddenMessage(
                message=originals[h["message_id"]], hidden_at=h["hidden_at"], rev=int(h["rev"])
            )
            for h in hides
            if h["message_id"] in originals
        ]
        page = await self._page([mongo_message(d) for d in docs[:limit]])
        return Changes(page=page, hidden=hidden, limited=len(docs) > limit)

    async def page_of(self, message_ids: Sequence[str]) -> Page:
        """See `MessageStore.page_of`."""
        found = {
            d["_id"]: mongo_message(d)
            async for d in self._messages.find({"_id": {"$in": list(message_ids)}})
        }
        return await self._page([found[i] for i in message_ids if i in found])

    async def lookup_for_read(self, message_ids: Sequence[str]) -> ReadLookup:
        """See `MessageStore.lookup_for_read`."""
        found = {
            d["_id"]: mongo_message(d)
            async for d in self._messages.find({"_id": {"$in": list(message_ids)}})
        }
        messages = [found[i] for i in message_ids if i in found]
        dm_ids = sorted({m.chat_id for m in messages if domain.is_dm(m.chat_id)})
        conversations = {
            d["_id"]: mongo_conversation(d)
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

    # --- changes ----------------------------------------------------------------------

    async def edit(
        self, message_id: str, editor_id: str, content: str, *, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.edit`."""
        message = await self._require(message_id)
        if message.content == content and not message.is_deleted:
            return Changed(message=message, changed=False)
        policy.check_edit(message, editor_id, now, rules)
        rev = await self._next_rev(message.chat_id)
        # Conditional on the content we checked: a concurrent edit or delete in between
        # makes this match nothing, and the command is answered from the new state.
        updated = await self._messages.find_one_and_update(
            {"_id": message_id, "content": message.content, "deleted_at": None},
            {"$set": {"content": content, "edited_at": now}, "$max": {"rev": rev}},
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            return await self.edit(message_id, editor_id, content, now=now, rules=rules)
        await self._edits.insert_one(
            {
                "message_id": message_id,
                "content": message.content or "",
                "written_at": message.edited_at or message.created_at,
            }
        )
        return Changed(message=mongo_message(updated), changed=True)

    async def edits(self, message_id: str) -> list[EditVersion]:
        """See `MessageStore.edits`."""
        docs = (
            await self._edits.find({"message_id": message_id})
            .sort([("written_at", ASCENDING), ("_id", ASCENDING)])
            .to_list(None)
        )
        return [EditVersion(content=d["content"], written_at=d["written_at"]) for d in docs]

    async def delete_for_everyone(
        self, message_id: str, actor_id: str, *, is_admin: bool, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.delete_for_everyone`."""
        message = await self._require(message_id)
        if message.is_deleted:
            return Changed(message=message, changed=False)
        policy.check_delete(message, actor_id, is_admin=is_admin, now=now, rules=rules)
        rev = await self._next_rev(message.chat_id)
        updated = await self._messages.find_one_and_update(
            {"_id": message_id, "deleted_at": None},
            {
                "$set": {
                    "content": None,
                    "media_url": None,
                    "deleted_at": now,
                    "pinned_at": None,
                    "pinned_by": None,
                },
                "$max": {"rev": rev},
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            return Changed(message=await self._require(message_id), changed=False)
        await self._reactions.delete_many({"message_id": message_id})
        await self._edits.delete_many({"message_id": message_id})
        return Changed(
            message=mongo_message(updated),
            changed=True,
            was_pinned=message.pinned_at is not None,
        )

    async def hide(self, message_id: str, user_id: str, *, now: datetime) -> Changed:
        """See `MessageStore.hide`."""
        message = await self._require(message_id)
        if await self._hidden.find_one({"user_id": user_id, "message_id": message_id}):
            return Changed(message=message, changed=False)
        rev = await self._next_rev(message.chat_id)
        try:
            await self._hidden.insert_one(
                {
                    "user_id": user_id,
                    "message_id": message_id,
                    "chat_id": message.chat_id,
                    "rev": rev,
                    "hidden_at": now,
                }
            )
        except DuplicateKeyError:
            return Changed(message=message, changed=False)
        return Changed(message=message, changed=True)

    async def add_reaction(
        self, message_id: str, user_id: str, emoji: str, *, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.add_reaction`."""
        message = await self._require(message_id)
        policy.require_alive(message)
        existing = (await self._reaction_rows([message_id])).get(message_id, [])
        if ReactionRow(emoji, user_id) in existing:
            return Changed(message=message, changed=False, reactions=existing)
        policy.check_reaction_limits(existing, user_id, emoji, rules)
        try:
            await self._reactions.insert_one(
                {"message_id": message_id, "user_id": user_id, "emoji": emoji, "created_at": now}
            )
        except DuplicateKeyError:
            # The same user's concurrent add won: a no-op, like adding twice.
            rows = (await self._reaction_rows([message_id])).get(message_id, [])
            return Changed(message=message, changed=False, reactions=rows)
        touched = await self._touch(message)
        rows = (await self._reaction_rows([message_id])).get(message_id, [])
        return Changed(message=touched, changed=True, reactions=rows)

    async def remove_reaction(self, message_id: str, user_id: str, emoji: str) -> Changed:
        """See `MessageStore.remove_reaction`."""
        message = await self._require(message_id)
        result = await self._reactions.delete_one(
            {"message_id": message_id, "user_id": user_id, "emoji": emoji}
        )
        if result.deleted_count:
            message = await self._touch(message)
        rows = (await self._reaction_rows([message_id])).get(message_id, [])
        return Changed(message=message, changed=bool(result.deleted_count), reactions=rows)

    async def set_pin(
        self, message_id: str, actor_id: str, *, pinned: bool, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.set_pin`."""
        message = await self._require(message_id)
        if (message.pinned_at is not None) == pinned:
            return Changed(message=message, changed=False)
        if pinned:
            policy.require_alive(message)
            count = await self._messages.count_documents(
                {"chat_id": message.chat_id, "pinned_at": {"$type": "date"}}
            )
            policy.check_pin_count(count, rules)
        rev = await self._next_rev(message.chat_id)
        at, by = (now, actor_id) if pinned else (None, None)
        condition: Document = (
            {"pinned_at": None, "deleted_at": None} if pinned else {"pinned_at": {"$ne": None}}
        )
        updated = await self._messages.find_one_and_update(
            {"_id": message_id, **condition},
            {"$set": {"pinned_at": at, "pinned_by": by}, "$max": {"rev": rev}},
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            return Changed(message=await self._require(message_id), changed=False)
        return Changed(message=mongo_message(updated), changed=True)

    async def pins(self, chat_id: str) -> Page:
        """See `MessageStore.pins`."""
        docs = (
            await self._messages.find({"chat_id": chat_id, "pinned_at": {"$type": "date"}})
            .sort([("pinned_at", DESCENDING), ("seq", DESCENDING)])
            .to_list(None)
        )
        return await self._page([mongo_message(d) for d in docs])

    async def search(
        self,
        viewer_id: str,
        chat_ids: Sequence[str],
        words: Sequence[str],
        *,
        before: SearchCursor | None,
        limit: int,
    ) -> Page:
        """See `MessageStore.search`: the text index for the first word (a whole word, as
        the index stores it), a case-insensitive prefix match for the last.

        `$text` takes one quoted word: with several phrases or a phrase and terms its
        matching is not a plain AND (MongoDB SERVER-30163), so the other whole words
        are `$regex` conditions on the candidates the index found."""
        whole = [
            {"content": {"$regex": r"(^|\W)" + re.escape(w) + r"(\W|$)", "$options": "i"}}
            for w in words[1:-1]
        ]
        prefix = {"content": {"$regex": r"(^|\W)" + re.escape(words[-1]), "$options": "i"}}
        query: Document = {
            "chat_id": {"$in": list(chat_ids)},
            "deleted_at": None,
            "$and": [*whole, prefix],
        }
        if len(words) > 1:
            query["$text"] = {"$search": f'"{words[0]}"'}
        hidden = [
            d["message_id"]
            async for d in self._hidden.find(
                {"user_id": viewer_id, "chat_id": {"$in": list(chat_ids)}},
                projection={"message_id": True},
            )
        ]
        if hidden:
            query["_id"] = {"$nin": hidden}
        if before is not None:
            query["$and"].append(
                {
                    "$or": [
                        {"created_at": {"$lt": before.created_at}},
                        {"created_at": before.created_at, "_id": {"$lt": before.message_id}},
                    ]
                }
            )
        docs = (
            await self._messages.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .to_list(limit + 1)
        )
        return await self._page(
            [mongo_message(d) for d in docs[:limit]], has_more=len(docs) > limit
        )

    async def set_mute(self, user_id: str, chat_id: str, until: datetime | None) -> bool:
        """See `MessageStore.set_mute`."""
        old = await self._mutes.find_one_and_update(
            {"user_id": user_id, "chat_id": chat_id},
            {"$set": {"muted_until": until}},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return old is None or old.get("muted_until") != until

    async def clear_mute(self, user_id: str, chat_id: str) -> bool:
        """See `MessageStore.clear_mute`."""
        result = await self._mutes.delete_one({"user_id": user_id, "chat_id": chat_id})
        return bool(result.deleted_count)


__all__ = ["MongoMessageStore"]
