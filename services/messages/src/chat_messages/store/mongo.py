"""`MessageStore` on MongoDB (PyMongo's `AsyncMongoClient`).

Collections: `conversations` (unique sorted user pair), `chats` (the per-chat `seq`
and `rev` counters, `_id` = chat id), `messages` (unique (chat_id, seq), unique
(sender_id, client_message_id), (chat_id, rev), a text index on `content`), `edits`
(previous contents), `reactions` (unique (message_id, user_id, emoji)), `hidden`
(delete for me, unique (user_id, message_id)), `mutes` (unique (user_id, chat_id)) and
`reads` (one watermark per (user_id, chat_id)).

Every command that writes is one multi-document transaction (a replica set is
required; `chat_runtime.mongo.in_transaction`): a new message's DM find-or-create,
`seq` and `rev`, insert and the sender's watermark commit together or not at all, and
so does every change that takes a `rev` (edit, delete, hide, reactions, pins) with the
change itself. Each of them writes the chat's counter document (`_take`), so two in
one chat conflict and pymongo runs the loser again on the new state: `seq` and `rev`
have no gaps and become visible in order, a lost `clientMessageId` race burns no
number, and `lastSeq`/`lastRev` (the counters) are always those of stored messages.
The rules that read stored data (the reaction and pin limits, the edit window) are
judged on the transaction's snapshot, so concurrent adds cannot pass a limit. Unread
counts are one aggregate per `sync`; every page is limited by the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession

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
    stored,
)
from chat_runtime.mongo import Document


class MongoMessageStore(MongoCollections):
    """`MessageStore` on MongoDB (see the module docstring for its atomicity)."""

    # --- new messages ---------------------------------------------------------------

    async def append(
        self, target: Target, draft: MessageDraft, *, new_conversation_id: str
    ) -> Appended:
        """See `MessageStore.append`: one transaction."""

        async def work(session: AsyncClientSession) -> Appended:
            first = await self._by_client_id(draft.sender_id, draft.client_message_id, session)
            if first is not None:
                return await self._duplicate(first, session)
            conversation: Conversation | None = None
            existing_chat: str | None
            if isinstance(target, GroupTarget):
                existing_chat = target.group_id
            elif isinstance(target, ConversationTarget):
                found = await self._conversation(target.conversation_id, session)
                conversation = domain.require_participant(found, draft.sender_id)
                existing_chat = conversation.id
            else:
                conversation = await self._find_dm(target, session)
                existing_chat = conversation.id if conversation is not None else None
            reply_to = None
            if draft.reply_to_id is not None:
                # A DM that does not exist yet has nothing to quote: NOT_FOUND.
                original = (
                    await self._message(draft.reply_to_id, session) if existing_chat else None
                )
                reply_to = domain.require_reply_target(original, existing_chat or "")
            created = isinstance(target, PeerTarget) and conversation is None
            if isinstance(target, PeerTarget) and conversation is None:
                conversation = await self._create_dm(session, target, new_conversation_id, draft)
            chat_id = conversation.id if conversation is not None else existing_chat
            if chat_id is None:
                raise RuntimeError("unreachable: only a DM pair resolves to no chat")
            seq, rev = await self._take(session, chat_id, seq=True)
            message = draft.stored(chat_id, seq, rev)
            await self._messages.insert_one(message_doc(message), session=session)
            await self._reads.update_one(
                {"user_id": draft.sender_id, "chat_id": chat_id},
                {"$max": {"last_read_seq": message.seq}},
                upsert=True,
                session=session,
            )
            return Appended(
                message=message,
                reply_to=reply_to,
                duplicate=False,
                conversation=conversation,
                dm_created=created,
            )

        return await self._transaction(work)

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
        docs = await self._messages.find(query).sort("seq", DESCENDING).limit(limit + 1).to_list()
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

        unread = await self._unread(user_id, last, marks)
        return [
            ChatCounters(
                chat_id=c,
                last_seq=last.get(c, (0, 0))[0],
                last_rev=last.get(c, (0, 0))[1],
                unread=unread.get(c, 0),
                muted=c in mutes,
                muted_until=mutes.get(c),
            )
            for c in chat_ids
        ]

    async def messages_after(
        self, chat_id: str, viewer_id: str, *, after_seq: int, through_seq: int, limit: int
    ) -> Page:
        """See `MessageStore.messages_after`."""
        query: Document = {"chat_id": chat_id, "seq": {"$gt": after_seq, "$lte": through_seq}}
        hidden = await self._hidden_ids(viewer_id, chat_id)
        if hidden:
            query["_id"] = {"$nin": hidden}
        docs = await self._messages.find(query).sort("seq", ASCENDING).limit(limit).to_list()
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
        docs = await self._messages.find(query).sort("rev", ASCENDING).limit(limit + 1).to_list()
        hides = (
            await self._hidden.find(
                {"user_id": viewer_id, "chat_id": chat_id, "rev": {"$gt": after_rev}}
            )
            .sort("rev", ASCENDING)
            .limit(limit)
            .to_list()
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
        """See `MessageStore.edit`: the check, the rev, the change and the kept
        version in one transaction."""

        async def work(session: AsyncClientSession) -> Changed:
            message = await self._require(message_id, session)
            if message.content == content and not message.is_deleted:
                return Changed(message=message, changed=False)
            policy.check_edit(message, editor_id, now, rules)
            _, rev = await self._take(session, message.chat_id)
            updated = await self._messages.find_one_and_update(
                {"_id": message_id},
                {"$set": {"content": content, "edited_at": now, "rev": rev}},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            await self._edits.insert_one(
                {
                    "message_id": message_id,
                    "content": message.content or "",
                    "written_at": message.edited_at or message.created_at,
                },
                session=session,
            )
            return Changed(message=stored(updated), changed=True)

        return await self._transaction(work)

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
        """See `MessageStore.delete_for_everyone`: one transaction."""

        async def work(session: AsyncClientSession) -> Changed:
            message = await self._require(message_id, session)
            if message.is_deleted:
                return Changed(message=message, changed=False)
            policy.check_delete(message, actor_id, is_admin=is_admin, now=now, rules=rules)
            _, rev = await self._take(session, message.chat_id)
            tombstone = {
                "content": None,
                "media_url": None,
                "deleted_at": now,
                "pinned_at": None,
                "pinned_by": None,
                "rev": rev,
            }
            updated = await self._messages.find_one_and_update(
                {"_id": message_id},
                {"$set": tombstone},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            await self._reactions.delete_many({"message_id": message_id}, session=session)
            await self._edits.delete_many({"message_id": message_id}, session=session)
            return Changed(
                message=stored(updated), changed=True, was_pinned=message.pinned_at is not None
            )

        return await self._transaction(work)

    async def hide(self, message_id: str, user_id: str, *, now: datetime) -> Changed:
        """See `MessageStore.hide`: the hide and its rev in one transaction."""

        async def work(session: AsyncClientSession) -> Changed:
            message = await self._require(message_id, session)
            mine = {"user_id": user_id, "message_id": message_id}
            if await self._hidden.find_one(mine, session=session) is not None:
                return Changed(message=message, changed=False)
            _, rev = await self._take(session, message.chat_id)
            await self._hidden.insert_one(
                {**mine, "chat_id": message.chat_id, "rev": rev, "hidden_at": now},
                session=session,
            )
            return Changed(message=message, changed=True)

        return await self._transaction(work)

    async def add_reaction(
        self, message_id: str, user_id: str, emoji: str, *, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.add_reaction`: the limits judged on the reactions this
        transaction reads; the message's rev write makes concurrent adds conflict."""

        async def work(session: AsyncClientSession) -> Changed:
            message = await self._require(message_id, session)
            policy.require_alive(message)
            existing = (await self._reaction_rows([message_id], session)).get(message_id, [])
            if ReactionRow(emoji, user_id) in existing:
                return Changed(message=message, changed=False, reactions=existing)
            policy.check_reaction_limits(existing, user_id, emoji, rules)
            await self._reactions.insert_one(
                {"message_id": message_id, "user_id": user_id, "emoji": emoji, "created_at": now},
                session=session,
            )
            touched = await self._touch(session, message)
            rows = (await self._reaction_rows([message_id], session)).get(message_id, [])
            return Changed(message=touched, changed=True, reactions=rows)

        return await self._transaction(work)

    async def remove_reaction(self, message_id: str, user_id: str, emoji: str) -> Changed:
        """See `MessageStore.remove_reaction`: one transaction."""

        async def work(session: AsyncClientSession) -> Changed:
            message = await self._require(message_id, session)
            result = await self._reactions.delete_one(
                {"message_id": message_id, "user_id": user_id, "emoji": emoji}, session=session
            )
            if result.deleted_count:
                message = await self._touch(session, message)
            rows = (await self._reaction_rows([message_id], session)).get(message_id, [])
            return Changed(message=message, changed=bool(result.deleted_count), reactions=rows)

        return await self._transaction(work)

    async def set_pin(
        self, message_id: str, actor_id: str, *, pinned: bool, now: datetime, rules: Rules
    ) -> Changed:
        """See `MessageStore.set_pin`: the count, the rev and the pin in one transaction
        (the chat's counter write makes two pins at the limit conflict)."""

        async def work(session: AsyncClientSession) -> Changed:
            message = await self._require(message_id, session)
            if (message.pinned_at is not None) == pinned:
                return Changed(message=message, changed=False)
            if pinned:
                policy.require_alive(message)
                count = await self._messages.count_documents(
                    {"chat_id": message.chat_id, "pinned_at": {"$type": "date"}}, session=session
                )
                policy.check_pin_count(count, rules)
            _, rev = await self._take(session, message.chat_id)
            at, by = (now, actor_id) if pinned else (None, None)
            updated = await self._messages.find_one_and_update(
                {"_id": message_id},
                {"$set": {"pinned_at": at, "pinned_by": by, "rev": rev}},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            return Changed(message=stored(updated), changed=True)

        return await self._transaction(work)

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
            .limit(limit + 1)
            .to_list()
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

    async def muted_among(self, chat_id: str, user_ids: Sequence[str], now: datetime) -> list[str]:
        """See `MessageStore.muted_among`."""
        cursor = self._mutes.find(
            {
                "chat_id": chat_id,
                "user_id": {"$in": list(dict.fromkeys(user_ids))},
                "$or": [{"muted_until": None}, {"muted_until": {"$gt": now}}],
            },
            projection={"user_id": True},
        )
        return sorted([d["user_id"] async for d in cursor])

    async def clear_mute(self, user_id: str, chat_id: str) -> bool:
        """See `MessageStore.clear_mute`."""
        result = await self._mutes.delete_one({"user_id": user_id, "chat_id": chat_id})
        return bool(result.deleted_count)


__all__ = ["MongoMessageStore"]
