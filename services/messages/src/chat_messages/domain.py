"""Pure rules of the messages service: chat resolution, seq windows, watermarks, views.

Nothing here does I/O or reads the clock: handlers pass the time in, stores call the
checks inside their own transaction when the check needs stored data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec

from chat_contracts import DomainError, ErrorCode, ids, limits
from chat_contracts.bus import Membership
from chat_contracts.client import MessageType, SyncCursor
from chat_contracts.server import (
    ChatState,
    ForwardedFrom,
    MessageBatch,
    ReactionSummary,
    ReplyContext,
    SocketMessage,
)
from chat_runtime.clock import iso

#: DM conversations are ours ("c_..."); groups ("g_...") belong to the groups service.
DM_PREFIX: Final = ids.CONVERSATION_PREFIX
GROUP_PREFIX: Final = ids.GROUP_PREFIX
MESSAGE_PREFIX: Final = ids.MESSAGE_PREFIX


# --- stored records -----------------------------------------------------------------


class Conversation(msgspec.Struct, frozen=True, kw_only=True):
    """A DM: exactly two participants, stored as the sorted pair (`user_a` < `user_b`)."""

    id: str
    user_a: str
    user_b: str
    created_at: datetime

    @property
    def participants(self) -> tuple[str, str]:
        """Both user ids."""
        return (self.user_a, self.user_b)


class MessageDraft(msgspec.Struct, frozen=True, kw_only=True):
    """A message before the store gives it a chat and a `seq`."""

    id: str
    sender_id: str
    sender_name: str
    sender_avatar: str | None
    client_message_id: str
    type: MessageType
    content: str | None
    media_url: str | None
    reply_to_id: str | None
    created_at: datetime
    #: A forwarded message names its source (flat, so both stores keep it as columns).
    fwd_message_id: str | None = None
    fwd_sender_id: str | None = None
    fwd_sender_name: str | None = None

    def stored(self, chat_id: str, seq: int, rev: int) -> StoredMessage:
        """The message as stored once the store gave it its chat, `seq` and `rev`."""
        return StoredMessage(**msgspec.structs.asdict(self), chat_id=chat_id, seq=seq, rev=rev)


class StoredMessage(MessageDraft, frozen=True, kw_only=True):
    """A message as stored: the draft plus its chat, `seq`, the `rev` of its latest
    change, and its edit / delete / pin state."""

    chat_id: str
    seq: int
    rev: int = 0
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    pinned_at: datetime | None = None
    pinned_by: str | None = None

    @property
    def is_deleted(self) -> bool:
        """True for a tombstone (deleted for everyone)."""
        return self.deleted_at is not None


class ReactionRow(msgspec.Struct, frozen=True, array_like=True):
    """One stored reaction, in the order reactions were added."""

    emoji: str
    user_id: str


class HiddenMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message one user deleted for themselves, with the chat `rev` the hiding took."""

    message: StoredMessage
    hidden_at: datetime
    rev: int


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """Messages read together with the originals they reply to (by id)."""

    messages: list[StoredMessage]
    replies: dict[str, StoredMessage] = {}
    reactions: dict[str, list[ReactionRow]] = {}
    has_more: bool = False


class ChatCounters(msgspec.Struct, frozen=True, kw_only=True):
    """One chat of a user: its newest `seq` and `rev`, the user's unread count and mute."""

    chat_id: str
    last_seq: int
    unread: int
    last_rev: int = 0
    #: The user's mute row: `muted` with `muted_until` None means forever.
    muted: bool = False
    muted_until: datetime | None = None


# --- targets ------------------------------------------------------------------------


class ConversationTarget(msgspec.Struct, frozen=True, kw_only=True):
    """An existing DM named by id: it must exist and the actor must be in it."""

    conversation_id: str


class PeerTarget(msgspec.Struct, frozen=True, kw_only=True):
    """A DM named by its two users (sorted): found, or created on send."""

    user_a: str
    user_b: str


class GroupTarget(msgspec.Struct, frozen=True, kw_only=True):
    """A group; membership is the groups service's answer."""

    group_id: str


Target = ConversationTarget | PeerTarget | GroupTarget


def dm_pair(user_id: str, other_id: str) -> tuple[str, str]:
    """The order-independent key of a DM."""
    return (user_id, other_id) if user_id < other_id else (other_id, user_id)


def target_of(
    actor_id: str,
    *,
    conversation_id: str | None,
    target_user_id: str | None,
    group_id: str | None,
) -> Target:
    """The chat a payload names (the contracts guarantee exactly one of the three)."""
    if target_user_id is not None:
        if target_user_id == actor_id:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, "cannot message yourself", field="targetUserId"
            )
        user_a, user_b = dm_pair(actor_id, target_user_id)
        return PeerTarget(user_a=user_a, user_b=user_b)
    if conversation_id is not None:
        return ConversationTarget(conversation_id=conversation_id)
    if group_id is not None:
        return GroupTarget(group_id=group_id)
    raise DomainError(ErrorCode.VALIDATION_ERROR, "no chat named", field="conversationId")


def require_participant(
    conversation: Conversation | None, user_id: str, *, field: str = "conversationId"
) -> Conversation:
    """The DM a user may use: NOT_FOUND when absent, FORBIDDEN when not theirs."""
    if conversation is None:
        raise DomainError(ErrorCode.NOT_FOUND, "conversation not found", field=field)
    if user_id not in conversation.participants:
        raise DomainError(ErrorCode.FORBIDDEN, "not a participant", field=field)
    return conversation


def require_member(membership: Membership, *, field: str = "groupId") -> None:
    """A group a user may use: NOT_FOUND when it does not exist, FORBIDDEN when not a member."""
    if not membership.exists:
        raise DomainError(ErrorCode.NOT_FOUND, "group not found", field=field)
    if membership.role is None:
        raise DomainError(ErrorCode.FORBIDDEN, "not a member", field=field)


def require_reply_target(original: StoredMessage | None, chat_id: str) -> StoredMessage:
    """A reply must quote a message of the same chat; anything else looks absent."""
    # A message of another chat answers NOT_FOUND too, so that ids of chats the sender
    # cannot see are not confirmed to exist.
    if original is None or original.chat_id != chat_id:
        raise DomainError(ErrorCode.NOT_FOUND, "message to reply to not found", field="replyToId")
    return original


def is_dm(chat_id: str) -> bool:
    """True for a DM conversation id, False for a group id."""
    return chat_id.startswith(DM_PREFIX)


def chat_fields(chat_id: str) -> tuple[str | None, str | None]:
    """`(conversation_id, group_id)` of a chat, exactly one set."""
    return (chat_id, None) if is_dm(chat_id) else (None, chat_id)


# --- time ---------------------------------------------------------------------------


def to_millis(moment: datetime) -> datetime:
    """`moment` in UTC, cut to milliseconds: what both stores and the wire can hold."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def resolve_read_at(requested: datetime | None, now: datetime) -> datetime:
    """The client's `readAt` when given and not in the future, else `now`."""
    if requested is None:
        return now
    if requested.tzinfo is None:
        # An offset-less time from a client is read as UTC (the protocol's only zone).
        requested = requested.replace(tzinfo=UTC)
    return min(requested, now)


# --- views --------------------------------------------------------------------------


def reply_context(original: StoredMessage) -> ReplyContext:
    """`replyTo` of a message quoting `original`: a preview, emptied once it is deleted."""
    preview = (original.content or "")[: limits.REPLY_PREVIEW_LENGTH]
    content = "" if original.is_deleted else preview
    return ReplyContext(
        message_id=original.id,
        content=content,
        sender_id=original.sender_id,
        sender_name=original.sender_name,
        is_deleted=original.is_deleted,
        is_edited=original.edited_at is not None and not original.is_deleted,
        edited_at=iso(original.edited_at)
        if original.edited_at is not None and not original.is_deleted
        else None,
    )


def aggregate_reactions(rows: Iterable[ReactionRow]) -> list[ReactionSummary]:
    """`reactions` of a message: one entry per emoji in order of its first use, with the
    exact count and the first `REACTION_USER_IDS_SHOWN` (20) users in order of reacting."""
    users: dict[str, list[str]] = {}
    for row in rows:
        users.setdefault(row.emoji, []).append(row.user_id)
    return [
        ReactionSummary(emoji=emoji, count=len(ids), user_ids=ids[: limits.REACTION_USER_IDS_SHOWN])
        for emoji, ids in users.items()
    ]


def forwarded_from(message: StoredMessage) -> ForwardedFrom | None:
    """`forwardedFrom` of a forwarded message."""
    if message.fwd_message_id is None:
        return None
    return ForwardedFrom(
        message_id=message.fwd_message_id,
        sender_id=message.fwd_sender_id or "",
        sender_name=message.fwd_sender_name or "",
    )


def to_socket_message(
    message: StoredMessage,
    original: StoredMessage | None,
    reactions: Iterable[ReactionRow] = (),
) -> SocketMessage:
    """The client view of a stored message; `original` is the message it replies to."""
    conversation_id, group_id = chat_fields(message.chat_id)
    deleted = message.is_deleted
    return SocketMessage(
        id=message.id,
        seq=message.seq,
        conversation_id=conversation_id,
        group_id=group_id,
        sender_id=message.sender_id,
        sender_name=message.sender_name,
        sender_avatar=message.sender_avatar,
        client_message_id=message.client_message_id,
        type=message.type,
        # A tombstone keeps its place in the seq order but loses its content and media.
        content=None if deleted else message.content,
        media_url=None if deleted else message.media_url,
        created_at=iso(message.created_at),
        edited_at=iso(message.edited_at) if message.edited_at else None,
        deleted_at=iso(message.deleted_at) if message.deleted_at else None,
        reply_to=reply_context(original) if original is not None else None,
        forwarded_from=forwarded_from(message),
        is_edited=message.edited_at is not None,
        is_deleted=deleted,
        # A tombstone keeps no reactions and no pin (both are removed with it).
        reactions=[] if deleted else aggregate_reactions(reactions),
        pinned=message.pinned_at is not None and not deleted,
        rev=message.rev,
    )


def page_view(page: Page) -> list[SocketMessage]:
    """The client view of a page, in the page's order."""
    return [
        to_socket_message(
            m,
            page.replies.get(m.reply_to_id) if m.reply_to_id else None,
            page.reactions.get(m.id, ()),
        )
        for m in page.messages
    ]


def hidden_view(hidden: HiddenMessage) -> SocketMessage:
    """A message the viewer deleted for themselves, as the tombstone only they get."""
    tombstone = msgspec.structs.replace(
        hidden.message,
        content=None,
        media_url=None,
        deleted_at=hidden.message.deleted_at or hidden.hidden_at,
        rev=max(hidden.rev, hidden.message.rev),
    )
    return to_socket_message(tombstone, None)


def mute_state(counters: ChatCounters, now: datetime) -> tuple[bool, datetime | None]:
    """(muted now, until when; None = forever). An expired mute is no mute (compared on
    read: nothing in memory has to fire when it ends)."""
    if not counters.muted:
        return False, None
    if counters.muted_until is not None and counters.muted_until <= now:
        return False, None
    return True, counters.muted_until


def chat_state(counters: ChatCounters, now: datetime) -> ChatState:
    """One row of the `sync` ack (`mutedUntil`: absent = not muted, null = forever)."""
    conversation_id, group_id = chat_fields(counters.chat_id)
    muted, until = mute_state(counters, now)
    muted_until: str | msgspec.UnsetType | None = msgspec.UNSET
    if muted:
        muted_until = iso(until) if until is not None else None
    return ChatState(
        conversation_id=conversation_id,
        group_id=group_id,
        last_seq=counters.last_seq,
        last_rev=counters.last_rev,
        unread=counters.unread,
        muted_until=muted_until,
    )


# --- sync ---------------------------------------------------------------------------


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    """What a client holds of one chat: its last `seq`, and its last `rev` when it sent one."""

    seq: int = 0
    rev: int | None = None


def cursor_map(since: Iterable[SyncCursor]) -> dict[str, Cursor]:
    """Chat id → what the client holds (the highest of each when a chat is named twice)."""
    cursors: dict[str, Cursor] = {}
    for cursor in since:
        chat_id = cursor.conversation_id or cursor.group_id or ""
        held = cursors.get(chat_id, Cursor())
        rev = held.rev
        if cursor.rev is not None:
            rev = cursor.rev if rev is None else max(rev, cursor.rev)
        cursors[chat_id] = Cursor(seq=max(cursor.seq, held.seq), rev=rev)
    return cursors


def visible_chats(
    counters: Iterable[ChatCounters], named: Mapping[str, object]
) -> list[ChatCounters]:
    """The chats the `sync` ack lists: those with a message, and those the client named."""
    return [c for c in counters if c.last_seq > 0 or c.muted or c.chat_id in named]


def changes_wanted(cursor: Cursor, last_rev: int) -> bool:
    """Whether older messages may have changed since the client's `rev` (no `rev`: the
    client asked for new messages only)."""
    return cursor.rev is not None and cursor.rev < last_rev


class SyncWindow(msgspec.Struct, frozen=True, kw_only=True):
    """What to send of one chat: messages with `seq > after_seq`, `limited` if older remain."""

    after_seq: int
    limited: bool


def sync_window(
    cursor: int, last_seq: int, max_per_chat: int = limits.SYNC_MAX_PER_CHAT
) -> SyncWindow | None:
    """The missed range of one chat, or None when the client is up to date.

    Past `max_per_chat` (1,000) missed messages only the newest ones are sent: a client
    back after a long time sees the present first and pages back with `beforeSeq`.
    """
    if cursor >= last_seq:
        return None
    if last_seq - cursor > max_per_chat:
        return SyncWindow(after_seq=last_seq - max_per_chat, limited=True)
    return SyncWindow(after_seq=cursor, limited=False)


def split_batches(
    messages: Sequence[SocketMessage],
    chat_id: str,
    *,
    limited: bool,
    batch_size: int = limits.SYNC_BATCH_SIZE,
) -> list[MessageBatch]:
    """`message:batch` events of one chat, in seq order; only the last says `limited`."""
    conversation_id, group_id = chat_fields(chat_id)
    chunks = [list(messages[i : i + batch_size]) for i in range(0, len(messages), batch_size)]
    if not chunks and limited:
        # Nothing left in the window (seq gaps only) but older messages exist: the
        # client still needs the flag to know it should page back.
        chunks = [[]]
    last = len(chunks) - 1
    return [
        MessageBatch(
            messages=chunk,
            conversation_id=conversation_id,
            group_id=group_id,
            limited=limited and i == last,
        )
        for i, chunk in enumerate(chunks)
    ]


# --- reads --------------------------------------------------------------------------


def unique_ids(ids: Iterable[str]) -> list[str]:
    """The ids in first-seen order, each once."""
    return list(dict.fromkeys(ids))


def by_chat(messages: Iterable[StoredMessage]) -> dict[str, list[StoredMessage]]:
    """Messages grouped by chat, each group in the given order."""
    groups: dict[str, list[StoredMessage]] = {}
    for message in messages:
        groups.setdefault(message.chat_id, []).append(message)
    return groups


def advanced_watermark(old: int, messages: Iterable[StoredMessage]) -> int:
    """The read watermark after reading `messages`: it never moves back."""
    return max([old, *(m.seq for m in messages)])


def newly_read(messages: Iterable[StoredMessage], old_watermark: int, reader_id: str) -> int:
    """How many of `messages` were unread by `reader_id` before (own messages never are)."""
    return sum(1 for m in messages if m.seq > old_watermark and m.sender_id != reader_id)
