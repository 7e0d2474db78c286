"""Handlers of changes to existing messages: edit, delete, reactions, pins, plus search
and mute. Each one: access check → store (rules inside its transaction) → publish,
and only when the store says something changed (a retried command emits nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime

from chat_contracts import DomainError, ErrorCode, subjects
from chat_contracts.bus import Command, MessageDeletedForEveryone
from chat_contracts.client import (
    ChatMute,
    EditsQuery,
    MessageDelete,
    MessageEdit,
    MessagePinChange,
    PinsList,
    ReactionChange,
    SearchMessages,
)
from chat_contracts.server import (
    ChatMuted,
    ChatUnmuted,
    EditRecord,
    EditsResult,
    Empty,
    MessageDeleted,
    MessageEdited,
    MessagePinned,
    MessageResult,
    MessageUnpinned,
    PinsResult,
    ReactionAdded,
    ReactionRemoved,
    ReactionsResult,
    SearchResults,
)
from chat_messages import domain
from chat_messages import rules as policy
from chat_messages.access import Access
from chat_messages.context import Deps, view
from chat_messages.domain import ConversationTarget
from chat_runtime.clock import iso

MESSAGE_EDITED = "message:edited"
MESSAGE_DELETED = "message:deleted"
REACTION_ADDED = "message:reaction:added"
REACTION_REMOVED = "message:reaction:removed"
MESSAGE_PINNED = "message:pinned"
MESSAGE_UNPINNED = "message:unpinned"
SEARCH_RESULTS = "search:results"
CHAT_MUTED = "conversation:muted"
CHAT_UNMUTED = "conversation:unmuted"


class LifecycleHandlers:
    """Edit, delete, reactions, pins, search and mute."""

    def __init__(self, deps: Deps) -> None:
        self._store = deps.store
        self._groups = deps.groups
        self._publisher = deps.publisher
        self._clock = deps.clock
        self._rules = deps.rules
        self._access = Access(deps.store, deps.groups)

    def _now(self) -> datetime:
        return domain.to_millis(self._clock.now())

    async def edit(self, cmd: Command[MessageEdit]) -> MessageResult:
        """`message:edit`: own messages, inside the edit window; `message:edited` to the
        chat (the editing socket has the ack)."""
        actor, payload = cmd.actor, cmd.payload
        if not payload.content.strip():
            raise DomainError(ErrorCode.VALIDATION_ERROR, "content is empty", field="content")
        await self._access.named(actor, payload)
        changed = await self._store.edit(
            payload.message_id, actor.user_id, payload.content, now=self._now(), rules=self._rules
        )
        message = changed.message
        if changed.changed and message.edited_at is not None:
            conversation_id, group_id = domain.chat_fields(message.chat_id)
            event = MessageEdited(
                message_id=message.id,
                content=payload.content,
                edited_at=iso(message.edited_at),
                conversation_id=conversation_id,
                group_id=group_id,
            )
            await self._publisher.to_room(
                message.chat_id, MESSAGE_EDITED, event, skip_sid=cmd.origin_sid
            )
        return MessageResult(message=await view(self._store, message))

    async def edits(self, cmd: Command[EditsQuery]) -> EditsResult:
        """`message:history:edits`: every previous content of a message, oldest first,
        each with the time it was written; members of the chat only."""
        await self._access.message(cmd.actor, cmd.payload.message_id)
        versions = await self._store.edits(cmd.payload.message_id)
        return EditsResult(
            edits=[EditRecord(content=v.content, edited_at=iso(v.written_at)) for v in versions]
        )

    async def delete(self, cmd: Command[MessageDelete]) -> Empty:
        """`message:delete`: for everyone (tombstone, to the chat) or for me (hidden for
        the actor only, the event to the actor's other sockets)."""
        actor, payload = cmd.actor, cmd.payload
        access = await self._access.named(actor, payload)
        now = self._now()
        conversation_id, group_id = domain.chat_fields(access.message.chat_id)
        event = MessageDeleted(
            message_id=payload.message_id,
            deleted_by=actor.user_id,
            deleted_at=iso(now),
            delete_for_everyone=payload.delete_for_everyone,
            conversation_id=conversation_id,
            group_id=group_id,
        )
        if not payload.delete_for_everyone:
            hidden = await self._store.hide(payload.message_id, actor.user_id, now=now)
            if hidden.changed:
                await self._publisher.to_user(
                    actor.user_id, MESSAGE_DELETED, event, skip_sid=cmd.origin_sid
                )
            return Empty()
        changed = await self._store.delete_for_everyone(
            payload.message_id,
            actor.user_id,
            is_admin=access.is_group and access.is_admin,
            now=now,
            rules=self._rules,
        )
        if changed.changed:
            chat_id = changed.message.chat_id
            await self._publisher.to_room(chat_id, MESSAGE_DELETED, event, skip_sid=cmd.origin_sid)
            # The media service stops serving media no live message carries any more.
            original = access.message
            await self._publisher.event(
                subjects.MESSAGE_DELETED,
                MessageDeletedForEveryone(
                    message_id=original.id,
                    chat_id=chat_id,
                    sender_id=original.sender_id,
                    client_message_id=original.client_message_id,
                    media_url=original.media_url,
                ),
            )
            if changed.was_pinned:
                unpinned = MessageUnpinned(
                    message_id=payload.message_id,
                    unpinned_by=actor.user_id,
                    conversation_id=conversation_id,
                    group_id=group_id,
                )
                await self._publisher.to_room(chat_id, MESSAGE_UNPINNED, unpinned)
        return Empty()

    async def reaction_add(self, cmd: Command[ReactionChange]) -> ReactionsResult:
        """`message:reaction:add`: one per (user, emoji); adding twice emits nothing."""
        actor, payload = cmd.actor, cmd.payload
        emoji = policy.check_emoji(payload.emoji)
        await self._access.named(actor, payload)
        now = self._now()
        changed = await self._store.add_reaction(
            payload.message_id, actor.user_id, emoji, now=now, rules=self._rules
        )
        if changed.changed:
            conversation_id, group_id = domain.chat_fields(changed.message.chat_id)
            event = ReactionAdded(
                message_id=payload.message_id,
                user_id=actor.user_id,
                emoji=emoji,
                created_at=iso(now),
                conversation_id=conversation_id,
                group_id=group_id,
            )
            await self._publisher.to_room(
                changed.message.chat_id, REACTION_ADDED, event, skip_sid=cmd.origin_sid
            )
        return ReactionsResult(reactions=domain.aggregate_reactions(changed.reactions))

    async def reaction_remove(self, cmd: Command[ReactionChange]) -> ReactionsResult:
        """`message:reaction:remove`: removing one that is not there emits nothing."""
        actor, payload = cmd.actor, cmd.payload
        await self._access.named(actor, payload)
        changed = await self._store.remove_reaction(
            payload.message_id, actor.user_id, payload.emoji
        )
        if changed.changed:
            conversation_id, group_id = domain.chat_fields(changed.message.chat_id)
            event = ReactionRemoved(
                message_id=payload.message_id,
                user_id=actor.user_id,
                emoji=payload.emoji,
                conversation_id=conversation_id,
                group_id=group_id,
            )
            await self._publisher.to_room(
                changed.message.chat_id, REACTION_REMOVED, event, skip_sid=cmd.origin_sid
            )
        return ReactionsResult(reactions=domain.aggregate_reactions(changed.reactions))

    async def pin(self, cmd: Command[MessagePinChange]) -> Empty:
        """`message:pin`: both parties of a DM; group ADMINs (by default)."""
        return await self._set_pin(cmd, pinned=True)

    async def unpin(self, cmd: Command[MessagePinChange]) -> Empty:
        """`message:unpin`: the same people as `message:pin`."""
        return await self._set_pin(cmd, pinned=False)

    async def _set_pin(self, cmd: Command[MessagePinChange], *, pinned: bool) -> Empty:
        actor, payload = cmd.actor, cmd.payload
        access = await self._access.named(actor, payload)
        policy.check_pin_permission(
            is_group=access.is_group, is_admin=access.is_admin, rules=self._rules
        )
        now = self._now()
        changed = await self._store.set_pin(
            payload.message_id, actor.user_id, pinned=pinned, now=now, rules=self._rules
        )
        if not changed.changed:
            return Empty()
        chat_id = changed.message.chat_id
        conversation_id, group_id = domain.chat_fields(chat_id)
        if pinned:
            await self._publisher.to_room(
                chat_id,
                MESSAGE_PINNED,
                MessagePinned(
                    message_id=payload.message_id,
                    pinned_by=actor.user_id,
                    pinned_at=iso(now),
                    conversation_id=conversation_id,
                    group_id=group_id,
                ),
                skip_sid=cmd.origin_sid,
            )
        else:
            await self._publisher.to_room(
                chat_id,
                MESSAGE_UNPINNED,
                MessageUnpinned(
                    message_id=payload.message_id,
                    unpinned_by=actor.user_id,
                    conversation_id=conversation_id,
                    group_id=group_id,
                ),
                skip_sid=cmd.origin_sid,
            )
        return Empty()

    async def pins(self, cmd: Command[PinsList]) -> PinsResult:
        """`pins:list`: the chat's pinned messages, most recently pinned first."""
        target = await self._access.target(cmd.actor, cmd.payload)
        chat_id = await self._store.chat_of(target, cmd.actor.user_id)
        if chat_id is None:
            return PinsResult(messages=[])
        return PinsResult(messages=domain.page_view(await self._store.pins(chat_id)))

    async def search(self, cmd: Command[SearchMessages]) -> SearchResults:
        """`search:messages`: the ack and a `search:results` event to the asking socket.

        Chats the actor belongs to now (every message of a group, whenever the actor
        joined: the same rule as `messages:history`), or the one chat named; never
        tombstones nor messages the actor deleted for themselves; newest first.
        """
        actor, payload = cmd.actor, cmd.payload
        words = policy.search_words(payload.query)
        before = policy.decode_cursor(payload.cursor) if payload.cursor else None
        if payload.conversation_id is not None or payload.group_id is not None:
            target = await self._access.chat(
                actor, conversation_id=payload.conversation_id, group_id=payload.group_id
            )
            chat_id = await self._store.chat_of(target, actor.user_id)
            chat_ids = [chat_id] if chat_id is not None else []
        else:
            chat_ids = [
                *await self._store.conversation_ids(actor.user_id),
                *await self._groups.mine(actor),
            ]
        page = await self._store.search(
            actor.user_id, chat_ids, words, before=before, limit=payload.limit
        )
        results = SearchResults(
            query=payload.query,
            results=domain.page_view(page),
            has_more=page.has_more,
            cursor=policy.encode_cursor(page.messages[-1])
            if page.has_more and page.messages
            else None,
        )
        if cmd.origin_sid is not None:
            await self._publisher.to_socket(actor.user_id, cmd.origin_sid, SEARCH_RESULTS, results)
        return results

    async def mute(self, cmd: Command[ChatMute]) -> Empty:
        """`conversation:mute`: until `mutedUntil` (forever without one); the actor's
        other sockets get `conversation:muted`. Expiry is compared on read."""
        actor, payload = cmd.actor, cmd.payload
        chat_id = await self._chat(cmd)
        until = payload.muted_until
        if until is not None:
            until = domain.to_millis(until if until.tzinfo else until.replace(tzinfo=UTC))
            if until <= self._clock.now():
                raise DomainError(
                    ErrorCode.VALIDATION_ERROR, "mutedUntil is in the past", field="mutedUntil"
                )
        if await self._store.set_mute(actor.user_id, chat_id, until):
            conversation_id, group_id = domain.chat_fields(chat_id)
            event = ChatMuted(
                conversation_id=conversation_id,
                group_id=group_id,
                muted_until=iso(until) if until is not None else None,
            )
            await self._publisher.to_user(actor.user_id, CHAT_MUTED, event, skip_sid=cmd.origin_sid)
        return Empty()

    async def unmute(self, cmd: Command[ChatMute]) -> Empty:
        """`conversation:unmute`; the actor's other sockets get `conversation:unmuted`."""
        chat_id = await self._chat(cmd)
        if await self._store.clear_mute(cmd.actor.user_id, chat_id):
            conversation_id, group_id = domain.chat_fields(chat_id)
            event = ChatUnmuted(conversation_id=conversation_id, group_id=group_id)
            await self._publisher.to_user(
                cmd.actor.user_id, CHAT_UNMUTED, event, skip_sid=cmd.origin_sid
            )
        return Empty()

    async def _chat(self, cmd: Command[ChatMute]) -> str:
        """The chat a mute names, once the actor is in it."""
        payload = cmd.payload
        target = await self._access.chat(
            cmd.actor, conversation_id=payload.conversation_id, group_id=payload.group_id
        )
        if isinstance(target, ConversationTarget):
            chat_id = await self._store.chat_of(target, cmd.actor.user_id)
            if chat_id is None:
                raise DomainError(
                    ErrorCode.NOT_FOUND, "conversation not found", field="conversationId"
                )
            return chat_id
        return payload.group_id or ""
