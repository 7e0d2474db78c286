"""One handler per `cmd.messages.<action>`: check (domain) → store → publish.

Handlers publish only after the store call returned, i.e. after the write is durable:
live fan-out is at-most-once and `sync` repairs gaps from the store, so an event must
never announce something the store might not have.
"""

from __future__ import annotations

import asyncio

from chat_contracts import DomainError, ErrorCode, limits, routes, subjects
from chat_contracts.bus import Actor, ChatIds, Command, Empty
from chat_contracts.client import ChatTarget, HistoryRequest, MessageRead, MessageSend, SyncRequest
from chat_contracts.server import (
    HistoryResult,
    MessageResult,
    ReadEvent,
    ReadResult,
    SocketMessage,
    SyncResult,
)
from chat_messages import domain
from chat_messages.domain import GroupTarget, MessageDraft, Target
from chat_messages.groups import GroupDirectory
from chat_messages.store import Appended, MessageStore
from chat_runtime.bus import Publisher
from chat_runtime.clock import Clock, IdGenerator, iso
from chat_runtime.worker import Router

MESSAGE_NEW = "message:new"
MESSAGE_BATCH = "message:batch"
MESSAGE_READ = "message:read"


class MessageHandlers:
    """The commands of the messages service, bound to their collaborators."""

    def __init__(
        self,
        *,
        store: MessageStore,
        groups: GroupDirectory,
        publisher: Publisher,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._store = store
        self._groups = groups
        self._publisher = publisher
        self._clock = clock
        self._ids = ids

    async def _target(self, actor: Actor, chat: ChatTarget) -> Target:
        """The chat a payload names; for a group, only once the actor is a member.

        DM participation is checked by the store, inside the same read or write.
        """
        target = domain.target_of(
            actor.user_id,
            conversation_id=chat.conversation_id,
            target_user_id=chat.target_user_id,
            group_id=chat.group_id,
        )
        if isinstance(target, GroupTarget):
            domain.require_member(await self._groups.membership(actor, target.group_id))
        return target

    async def send(self, cmd: Command[MessageSend]) -> MessageResult:
        """`message:send`: store with the chat's next seq, then fan out `message:new`.

        A repeated `clientMessageId` answers with the first message and emits nothing.
        """
        actor, payload = cmd.actor, cmd.payload
        target = await self._target(actor, payload)
        draft = MessageDraft(
            id=self._ids.new(domain.MESSAGE_PREFIX),
            sender_id=actor.user_id,
            sender_name=actor.name,
            sender_avatar=actor.avatar,
            client_message_id=payload.client_message_id,
            type=payload.type,
            content=payload.content,
            media_url=payload.media_url,
            reply_to_id=payload.reply_to_id,
            created_at=domain.to_millis(self._clock.now()),
        )
        appended = await self._store.append(
            target, draft, new_conversation_id=self._ids.new(domain.DM_PREFIX)
        )
        message = domain.to_socket_message(appended.message, appended.reply_to)
        if not appended.duplicate:
            await self._fan_out_new(appended, message, cmd.origin_sid)
        return MessageResult(message=message)

    async def _fan_out_new(
        self, appended: Appended, message: SocketMessage, origin_sid: str | None
    ) -> None:
        conversation = appended.conversation
        if appended.dm_created and conversation is not None:
            # No gateway holds this room yet, and a room event published now would race
            # the gateway's new subscription. So each participant's sockets join the room
            # and get the first message on the user's own subject, in one delivery (the
            # sender's originating socket has the ack).
            for user_id in conversation.participants:
                skip = origin_sid if user_id == appended.message.sender_id else None
                await self._publisher.to_user(
                    user_id, MESSAGE_NEW, message, skip_sid=skip, join=[conversation.id]
                )
            return
        await self._publisher.to_room(
            appended.message.chat_id, MESSAGE_NEW, message, skip_sid=origin_sid
        )

    async def history(self, cmd: Command[HistoryRequest]) -> HistoryResult:
        """`messages:history`: newest first, before `beforeSeq` (exclusive)."""
        actor, payload = cmd.actor, cmd.payload
        target = await self._target(actor, payload)
        page = await self._store.history(
            target, actor.user_id, before_seq=payload.before_seq, limit=payload.limit
        )
        return HistoryResult(messages=domain.page_view(page), has_more=page.has_more)

    async def sync(self, cmd: Command[SyncRequest]) -> SyncResult:
        """`sync`: every chat's last seq and unread count; missed messages as batches.

        The batches go to the asking socket before the ack, so that a client that has
        the ack has everything the ack's `lastSeq` promises (up to the per-chat cap).
        """
        actor = cmd.actor
        group_ids = await self._groups.mine(actor)
        named = domain.cursor_map(cmd.payload.since)
        # Only chats of the actor come back from the store, so a cursor naming someone
        # else's chat is ignored without telling whether that chat exists.
        chats = domain.visible_chats(
            await self._store.chat_counters(actor.user_id, group_ids), named
        )
        if cmd.origin_sid is not None:
            for chat in chats:
                window = domain.sync_window(named.get(chat.chat_id, 0), chat.last_seq)
                if window is None:
                    continue
                # One read per chat that is behind, not one for all chats: memory stays
                # at one chat's 1,000 messages however many chats the user has.
                page = await self._store.messages_after(
                    chat.chat_id,
                    after_seq=window.after_seq,
                    through_seq=chat.last_seq,
                    limit=limits.SYNC_MAX_PER_CHAT,
                )
                batches = domain.split_batches(
                    domain.page_view(page), chat.chat_id, limited=window.limited
                )
                for batch in batches:
                    await self._publisher.to_socket(
                        actor.user_id, cmd.origin_sid, MESSAGE_BATCH, batch
                    )
        return SyncResult(chats=[domain.chat_state(c) for c in chats])

    async def read(self, cmd: Command[MessageRead]) -> ReadResult:
        """`message:read`: raise the actor's watermark per chat; one event per chat."""
        actor, payload = cmd.actor, cmd.payload
        field = "messageIds" if payload.message_ids is not None else "messageId"
        lookup = await self._store.lookup_for_read(domain.unique_ids(payload.ids))
        if not lookup.messages:
            raise DomainError(ErrorCode.NOT_FOUND, "message not found", field=field)
        chats = domain.by_chat(lookup.messages)

        # Every chat is checked before anything is written: one forbidden chat refuses
        # the whole call.
        group_ids = [c for c in chats if not domain.is_dm(c)]
        memberships = await asyncio.gather(*(self._groups.membership(actor, g) for g in group_ids))
        for membership in memberships:
            domain.require_member(membership, field=field)
        for chat_id in chats:
            if domain.is_dm(chat_id):
                conversation = lookup.conversations.get(chat_id)
                domain.require_participant(conversation, actor.user_id, field=field)

        read_at = iso(domain.resolve_read_at(payload.read_at, self._clock.now()))
        wanted = {chat_id: domain.advanced_watermark(0, msgs) for chat_id, msgs in chats.items()}
        before = await self._store.advance_reads(actor.user_id, wanted)

        count = 0
        for chat_id, msgs in chats.items():
            old = before.get(chat_id, 0)
            count += domain.newly_read(msgs, old, actor.user_id)
            if domain.advanced_watermark(old, msgs) <= old:
                continue
            conversation_id, group_id = domain.chat_fields(chat_id)
            event = ReadEvent(
                message_ids=[m.id for m in msgs],
                read_by=actor.user_id,
                read_at=read_at,
                conversation_id=conversation_id,
                group_id=group_id,
            )
            await self._publisher.to_room(chat_id, MESSAGE_READ, event, skip_sid=cmd.origin_sid)
        return ReadResult(count=count)

    async def mine(self, cmd: Command[Empty]) -> ChatIds:
        """`cmd.messages.mine`: the actor's DM ids, for the gateway to join their rooms."""
        return ChatIds(chat_ids=await self._store.conversation_ids(cmd.actor.user_id))


def build_router(handlers: MessageHandlers) -> Router:
    """The `cmd.messages.*` command table."""
    router = Router(subjects.MESSAGES)
    router.route(routes.MESSAGE_SEND, handlers.send)
    router.route(routes.MESSAGES_HISTORY, handlers.history)
    router.route(routes.SYNC, handlers.sync)
    router.route(routes.MESSAGE_READ, handlers.read)
    router.internal("mine", Empty, handlers.mine)
    return router
