"""One handler per `cmd.messages.<action>`: check (domain) → store → publish.

Handlers publish only after the store call returned, i.e. after the write is durable:
live fan-out is at-most-once and `sync` repairs gaps from the store, so an event must
never announce something the store might not have. This module holds new messages,
reads and catch-up; `lifecycle` holds the changes to existing messages.
"""

from __future__ import annotations

import asyncio

from chat_contracts import DomainError, ErrorCode, RetryableError, limits, routes, subjects
from chat_contracts.bus import Actor, ChatIds, Command, Empty, Muted, MutedQuery
from chat_contracts.client import (
    HistoryRequest,
    MessageBroadcast,
    MessageForward,
    MessageRead,
    MessageSend,
    SyncRequest,
)
from chat_contracts.server import (
    BroadcastOutcome,
    BroadcastResult,
    HistoryResult,
    MessageBatch,
    MessageResult,
    ReadEvent,
    ReadResult,
    SocketMessage,
    SyncResult,
)
from chat_messages import domain
from chat_messages import rules as policy
from chat_messages.access import Access
from chat_messages.context import Deps, view
from chat_messages.domain import MessageDraft, Target
from chat_messages.lifecycle import LifecycleHandlers
from chat_messages.push import push_event
from chat_messages.store import Appended
from chat_runtime.clock import iso
from chat_runtime.worker import Router

MESSAGE_NEW = "message:new"
MESSAGE_BATCH = "message:batch"
MESSAGE_READ = "message:read"


class MessageHandlers:
    """New messages (send, forward, broadcast), history, sync and reads."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._store = deps.store
        self._groups = deps.groups
        self._publisher = deps.publisher
        self._clock = deps.clock
        self._ids = deps.ids
        self._blocks = deps.blocks
        self._pushes = deps.pushes
        self._access = Access(deps.store, deps.groups)

    async def send(self, cmd: Command[MessageSend]) -> MessageResult:
        """`message:send`: store with the chat's next seq, then fan out `message:new`.

        A repeated `clientMessageId` answers with the first message and emits nothing.
        """
        actor, payload = cmd.actor, cmd.payload
        target = await self._access.post(
            actor,
            await self._access.target(actor, payload),
            type=payload.type,
            media_url=payload.media_url,
        )
        draft = self._draft(
            actor,
            client_message_id=payload.client_message_id,
            type=payload.type,
            content=payload.content,
            media_url=payload.media_url,
            reply_to_id=payload.reply_to_id,
        )
        return await self._post(target, draft, cmd.origin_sid)

    async def forward(self, cmd: Command[MessageForward]) -> MessageResult:
        """`message:forward`: a new message in the target with `forwardedFrom`.

        The forwarder must be able to read the source and post to the target; a
        tombstone cannot be forwarded; media keep the same `mediaUrl` (no copy). A
        forward of a forward names the first author.
        """
        actor, payload = cmd.actor, cmd.payload
        source = (await self._access.message(actor, payload.message_id)).message
        policy.require_alive(source)
        target = await self._access.chat(
            actor,
            conversation_id=payload.target_conversation_id,
            target_user_id=payload.target_user_id,
            group_id=payload.target_group_id,
        )
        await self._access.post(actor, target, type=source.type, media_url=source.media_url)
        draft = self._draft(
            actor,
            client_message_id=payload.client_message_id or self._ids.new("fwd_"),
            type=source.type,
            content=source.content,
            media_url=source.media_url,
            reply_to_id=None,
            fwd_message_id=source.fwd_message_id or source.id,
            fwd_sender_id=source.fwd_sender_id or source.sender_id,
            fwd_sender_name=source.fwd_sender_name or source.sender_name,
        )
        return await self._post(target, draft, cmd.origin_sid)

    async def broadcast(self, cmd: Command[MessageBroadcast]) -> BroadcastResult:
        """`message:broadcast`: one ordinary `message:new` per target; a target the
        sender may not post to fails alone with its code. With a `clientMessageId` a
        retry returns the same messages and emits nothing new."""
        actor, payload = cmd.actor, cmd.payload
        if len(payload.conversation_ids) + len(payload.group_ids) > limits.MAX_BROADCAST_TARGETS:
            raise DomainError(
                ErrorCode.LIMIT_EXCEEDED,
                f"at most {limits.MAX_BROADCAST_TARGETS} targets",
                field="groupIds" if payload.group_ids else "conversationIds",
            )
        named = [(c, None) for c in payload.conversation_ids] + [
            (None, g) for g in payload.group_ids
        ]

        async def one(conversation_id: str | None, group_id: str | None) -> BroadcastOutcome:
            outcome = BroadcastOutcome(
                status="ok", conversation_id=conversation_id, group_id=group_id
            )
            chat_id = conversation_id or group_id or ""
            try:
                target = await self._access.chat(
                    actor, conversation_id=conversation_id, group_id=group_id
                )
                await self._access.post(
                    actor, target, type=payload.type, media_url=payload.media_url
                )
                client_id = (
                    f"{payload.client_message_id}-{chat_id}"
                    if payload.client_message_id
                    else self._ids.new("bc_")
                )
                draft = self._draft(
                    actor,
                    client_message_id=client_id,
                    type=payload.type,
                    content=payload.content,
                    media_url=payload.media_url,
                    reply_to_id=None,
                )
                result = await self._post(target, draft, cmd.origin_sid)
            except DomainError as exc:
                return _outcome(outcome, "error", exc.code)
            except RetryableError as exc:
                return _outcome(outcome, "retry", exc.code)
            return BroadcastOutcome(
                status="ok",
                conversation_id=conversation_id,
                group_id=group_id,
                message_id=result.message.id,
            )

        results = await asyncio.gather(*(one(c, g) for c, g in named))
        return BroadcastResult(results=list(results))

    def _draft(
        self,
        actor: Actor,
        *,
        client_message_id: str,
        type: str,
        content: str | None,
        media_url: str | None,
        reply_to_id: str | None,
        fwd_message_id: str | None = None,
        fwd_sender_id: str | None = None,
        fwd_sender_name: str | None = None,
    ) -> MessageDraft:
        return MessageDraft(
            id=self._ids.new(domain.MESSAGE_PREFIX),
            sender_id=actor.user_id,
            sender_name=actor.name,
            sender_avatar=actor.avatar,
            client_message_id=client_message_id,
            type=type,  # type: ignore[arg-type]
            content=content,
            media_url=media_url,
            reply_to_id=reply_to_id,
            created_at=domain.to_millis(self._clock.now()),
            fwd_message_id=fwd_message_id,
            fwd_sender_id=fwd_sender_id,
            fwd_sender_name=fwd_sender_name,
        )

    async def _post(
        self, target: Target, draft: MessageDraft, origin_sid: str | None
    ) -> MessageResult:
        if self._blocks is not None:  # DMs across a block: BLOCKED (send, forward, broadcast)
            await self._blocks.check(draft.sender_id, target, self._store.conversation_ids)
        # The one media check of send, forward and broadcast (nothing without mediaUrl).
        await self._deps.media.admit(
            Actor(user_id=draft.sender_id, name=draft.sender_name),
            target,
            media_url=draft.media_url,
            message_type=draft.type,
            message_id=draft.id,
            client_message_id=draft.client_message_id,
            forward=draft.fwd_message_id is not None,
        )
        appended = await self._store.append(
            target, draft, new_conversation_id=self._ids.new(domain.DM_PREFIX)
        )
        message = domain.to_socket_message(appended.message, appended.reply_to)
        if appended.duplicate:
            # A retry: the first message in its current state (it may have been edited
            # or reacted to since), and no event.
            return MessageResult(message=await view(self._store, appended.message))
        await self._fan_out_new(appended, message, origin_sid)
        if self._pushes is not None:  # the durable push event (push.py)
            self._pushes.add(push_event(appended))
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
            appended.message.chat_id,
            MESSAGE_NEW,
            message,
            skip_sid=origin_sid,
            seq=appended.message.seq,
        )

    async def history(self, cmd: Command[HistoryRequest]) -> HistoryResult:
        """`messages:history`: newest first, before `beforeSeq` (exclusive)."""
        actor, payload = cmd.actor, cmd.payload
        target = await self._access.target(actor, payload)
        page = await self._store.history(
            target, actor.user_id, before_seq=payload.before_seq, limit=payload.limit
        )
        return HistoryResult(messages=domain.page_view(page), has_more=page.has_more)

    async def sync(self, cmd: Command[SyncRequest]) -> SyncResult:
        """`sync`: every chat's last seq and rev, unread count and mute; what the client
        missed as batches: new messages in seq order, then (when it sent a `rev`) the
        older messages changed since, as their current state, in rev order.

        The batches go to the asking socket before the ack, so that a client that has
        the ack has everything the ack's `lastSeq`/`lastRev` promise (up to the caps).
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
                batches = await self._missed(actor, chat, named.get(chat.chat_id, domain.Cursor()))
                for batch in batches:
                    await self._publisher.to_socket(
                        actor.user_id, cmd.origin_sid, MESSAGE_BATCH, batch
                    )
        now = self._clock.now()
        return SyncResult(chats=[domain.chat_state(c, now) for c in chats])

    async def _missed(
        self, actor: Actor, chat: domain.ChatCounters, cursor: domain.Cursor
    ) -> list[MessageBatch]:
        views: list[SocketMessage] = []
        limited = False
        window = domain.sync_window(cursor.seq, chat.last_seq)
        if window is not None:
            # One read per chat that is behind, not one for all chats: memory stays
            # at one chat's 1,000 messages however many chats the user has.
            page = await self._store.messages_after(
                chat.chat_id,
                actor.user_id,
                after_seq=window.after_seq,
                through_seq=chat.last_seq,
                limit=limits.SYNC_MAX_PER_CHAT,
            )
            views.extend(domain.page_view(page))
            limited = window.limited
        if domain.changes_wanted(cursor, chat.last_rev) and cursor.seq > 0:
            changes = await self._store.changed_since(
                chat.chat_id,
                actor.user_id,
                after_rev=cursor.rev or 0,
                through_seq=min(cursor.seq, chat.last_seq),
                limit=limits.SYNC_MAX_PER_CHAT,
            )
            changed = domain.page_view(changes.page) + [
                domain.hidden_view(h) for h in changes.hidden
            ]
            views.extend(sorted(changed, key=lambda m: m.rev))
            limited = limited or changes.limited
        if not views and not limited:
            return []
        return domain.split_batches(views, chat.chat_id, limited=limited)

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

    async def muted(self, cmd: Command[MutedQuery]) -> Muted:
        """`cmd.messages.muted`: who of the asked users muted the chat (the notifications
        worker pushes to no one else)."""
        query = cmd.payload
        users = await self._store.muted_among(query.chat_id, query.user_ids, self._clock.now())
        return Muted(user_ids=users)


def _outcome(base: BroadcastOutcome, status: str, code: ErrorCode) -> BroadcastOutcome:
    return BroadcastOutcome(
        status=status,  # type: ignore[arg-type]
        conversation_id=base.conversation_id,
        group_id=base.group_id,
        code=code.value,
    )


def build_router(deps: Deps) -> Router:
    """The `cmd.messages.*` command table."""
    core = MessageHandlers(deps)
    changes = LifecycleHandlers(deps)
    router = Router(subjects.MESSAGES)
    router.route(routes.MESSAGE_SEND, core.send)
    router.route(routes.MESSAGES_HISTORY, core.history)
    router.route(routes.SYNC, core.sync)
    router.route(routes.MESSAGE_READ, core.read)
    router.route(routes.MESSAGE_FORWARD, core.forward)
    router.route(routes.MESSAGE_BROADCAST, core.broadcast)
    router.route(routes.MESSAGE_EDIT, changes.edit)
    router.route(routes.MESSAGE_HISTORY_EDITS, changes.edits)
    router.route(routes.MESSAGE_DELETE, changes.delete)
    router.route(routes.MESSAGE_REACTION_ADD, changes.reaction_add)
    router.route(routes.MESSAGE_REACTION_REMOVE, changes.reaction_remove)
    router.route(routes.MESSAGE_PIN, changes.pin)
    router.route(routes.MESSAGE_UNPIN, changes.unpin)
    router.route(routes.PINS_LIST, changes.pins)
    router.route(routes.SEARCH_MESSAGES, changes.search)
    router.route(routes.CONVERSATION_MUTE, changes.mute)
    router.route(routes.CONVERSATION_UNMUTE, changes.unmute)
    router.internal("mine", Empty, core.mine)
    router.internal("muted", MutedQuery, core.muted)
    return router
