"""Server→client payloads and ack results of PROTOCOL.md and frontend-requests.md.

Times are ISO-8601 UTC strings with milliseconds and `Z` (see `chat_runtime.clock`).
Optional fields are omitted from the wire when unset (``omit_defaults``), so clients
see exactly the shapes of the spec.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from chat_contracts.client import MessageType, Role

PresenceStatus = Literal["online", "offline", "away", "busy"]


class Out(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Base of every server payload."""


class ReplyContext(Out, kw_only=True):
    """`replyTo` of a message; `content` is "" and `isDeleted` true once the original is gone."""

    message_id: str
    content: str
    sender_id: str
    sender_name: str
    is_deleted: bool = False
    is_edited: bool = False
    edited_at: str | None = None


class ForwardedFrom(Out, kw_only=True):
    """`forwardedFrom` of a forwarded message."""

    message_id: str
    sender_id: str
    sender_name: str


class ReactionSummary(Out, kw_only=True):
    """One emoji's aggregate on a message (`userIds`: the first 20)."""

    emoji: str
    count: int
    user_ids: list[str]


class SocketMessage(Out, kw_only=True):
    """A message as every client sees it."""

    id: str
    seq: int
    sender_id: str
    sender_name: str
    type: MessageType
    created_at: str
    client_message_id: str | None = None
    conversation_id: str | None = None
    group_id: str | None = None
    sender_avatar: str | None = None
    content: str | None = None
    media_url: str | None = None
    edited_at: str | None = None
    deleted_at: str | None = None
    reply_to: ReplyContext | None = None
    forwarded_from: ForwardedFrom | None = None
    # Always on the wire (no defaults, so `omit_defaults` keeps them).
    is_edited: bool
    is_deleted: bool
    reactions: list[ReactionSummary]
    pinned: bool
    #: The chat's change revision of this message's latest change (see `sync`).
    rev: int


class MessageBatch(Out, kw_only=True):
    """`message:batch`: missed messages of one chat, in `seq` order."""

    messages: list[SocketMessage]
    conversation_id: str | None = None
    group_id: str | None = None
    limited: bool = False


class ReadEvent(Out, kw_only=True):
    """`message:read` (server→client): one per chat per read call."""

    message_ids: list[str]
    read_by: str
    read_at: str
    conversation_id: str | None = None
    group_id: str | None = None


class TypingEvent(Out, kw_only=True):
    """`typing:start` / `typing:stop` (server→client)."""

    user_id: str
    user_name: str
    user_avatar: str | None = None
    conversation_id: str | None = None
    group_id: str | None = None


class PresenceUpdate(Out, kw_only=True):
    """`presence:update`."""

    user_id: str
    status: PresenceStatus
    last_seen_at: str | None = None
    custom_status: str | None = None


class PresencePage(Out, kw_only=True):
    """`presence:query` ack and `presence:state` event."""

    online_user_ids: list[str]
    total: int
    has_more: bool
    cursor: str | None = None
    group_id: str | None = None


class LastSeen(Out, kw_only=True):
    """`presence:last_seen` (server→client), and one row of its ack."""

    user_id: str
    last_seen_at: str


class StatusUpdated(Out, kw_only=True):
    """`status:updated`: `status` "" means cleared."""

    user_id: str
    status: str
    emoji: str | None = None
    expires_at: str | None = None


# --- groups -----------------------------------------------------------------------


class Group(Out, kw_only=True):
    """A group as one member sees it (`myRole` is the viewer's)."""

    id: str
    name: str
    created_by: str
    created_at: str
    member_count: int
    my_role: Role
    description: str | None = None
    avatar_url: str | None = None


class GroupMemberAdded(Out, kw_only=True):
    """`group:member:added`."""

    group_id: str
    user_id: str
    added_by: str
    role: Role


class GroupMemberRemoved(Out, kw_only=True):
    """`group:member:removed`."""

    group_id: str
    user_id: str
    removed_by: str


class GroupMemberRoleChanged(Out, kw_only=True):
    """`group:member:role_changed`."""

    group_id: str
    user_id: str
    role: Role
    changed_by: str


class GroupUpdated(Out, kw_only=True):
    """`group:updated`: only the changed fields are present."""

    group_id: str
    updated_by: str
    name: str | None = None
    description: str | None = None
    avatar_url: str | None = None


class GroupDeleted(Out, kw_only=True):
    """`group:deleted`."""

    group_id: str
    deleted_by: str


# --- message changes --------------------------------------------------------------


class MessageEdited(Out, kw_only=True):
    """`message:edited`."""

    message_id: str
    content: str
    edited_at: str
    conversation_id: str | None = None
    group_id: str | None = None


class MessageDeleted(Out, kw_only=True):
    """`message:deleted`."""

    message_id: str
    deleted_by: str
    deleted_at: str
    delete_for_everyone: bool
    conversation_id: str | None = None
    group_id: str | None = None


class ReactionAdded(Out, kw_only=True):
    """`message:reaction:added`."""

    message_id: str
    user_id: str
    emoji: str
    created_at: str
    conversation_id: str | None = None
    group_id: str | None = None


class ReactionRemoved(Out, kw_only=True):
    """`message:reaction:removed`."""

    message_id: str
    user_id: str
    emoji: str
    conversation_id: str | None = None
    group_id: str | None = None


class MessagePinned(Out, kw_only=True):
    """`message:pinned`."""

    message_id: str
    pinned_by: str
    pinned_at: str
    conversation_id: str | None = None
    group_id: str | None = None


class MessageUnpinned(Out, kw_only=True):
    """`message:unpinned`."""

    message_id: str
    unpinned_by: str
    conversation_id: str | None = None
    group_id: str | None = None


class EditRecord(Out, kw_only=True):
    """One previous content of an edited message."""

    content: str
    edited_at: str


class SearchResults(Out, kw_only=True):
    """`search:messages` ack and `search:results` event."""

    query: str
    results: list[SocketMessage]
    has_more: bool
    cursor: str | None = None


class ChatMuted(Out, kw_only=True):
    """`conversation:muted`."""

    conversation_id: str | None = None
    group_id: str | None = None
    muted_until: str | None = None


class ChatUnmuted(Out, kw_only=True):
    """`conversation:unmuted`."""

    conversation_id: str | None = None
    group_id: str | None = None


class UserBlocked(Out, kw_only=True):
    """`user:blocked`."""

    blocked_by: str


class UserUnblocked(Out, kw_only=True):
    """`user:unblocked`."""

    unblocked_by: str


# --- uploads ----------------------------------------------------------------------


class UploadProgress(Out, kw_only=True):
    """`upload:progress`."""

    upload_id: str
    file_name: str
    progress: float
    bytes_uploaded: int
    total_bytes: int


class UploadComplete(Out, kw_only=True):
    """`upload:complete`."""

    upload_id: str
    file_name: str
    media_url: str
    file_size: int


class UploadFailed(Out, kw_only=True):
    """`upload:failed`."""

    upload_id: str
    file_name: str
    error: str


# --- calls ------------------------------------------------------------------------


class IceServer(Out, kw_only=True):
    """One entry of `iceServers` (RTCIceServer)."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class CallIncoming(Out, kw_only=True):
    """`call:incoming`."""

    call_id: str
    caller_id: str
    caller_name: str
    call_type: Literal["audio", "video"]
    offer: dict[str, Any]
    ice_servers: list[IceServer]
    caller_avatar: str | None = None


class CallAccepted(Out, kw_only=True):
    """`call:accepted`."""

    call_id: str
    answer: dict[str, Any]


class CallRejected(Out, kw_only=True):
    """`call:rejected`."""

    call_id: str
    reason: Literal["declined", "busy", "blocked", "offline"]


class CallEnded(Out, kw_only=True):
    """`call:ended`."""

    call_id: str
    reason: Literal["hangup", "timeout", "disconnect", "answered_elsewhere"]
    ended_by: str | None = None
    duration: int | None = None


CallType = Literal["audio", "video"]
#: How a call ended, in its record: the `call:ended` reasons, or the `call:rejected`
#: reason for a call that never rang or was refused while ringing.
CallOutcome = Literal["hangup", "timeout", "disconnect", "declined", "busy", "blocked", "offline"]


class CallRecord(Out, kw_only=True):
    """One call in `calls:history` (times ISO-8601; `duration` in seconds when answered)."""

    call_id: str
    caller_id: str
    callee_id: str
    call_type: CallType
    started_at: str
    answered_at: str | None = None
    ended_at: str | None = None
    reason: CallOutcome | None = None
    duration: int | None = None


class CallIceEvent(Out, kw_only=True):
    """`call:ice-candidate` (server→client)."""

    call_id: str
    candidate: dict[str, Any]
    from_user_id: str


# --- ack results (merged into the ack next to `status`) ---------------------------


class Empty(Out, kw_only=True):
    """An ack with no result fields."""


class MessageResult(Out, kw_only=True):
    """Ack of `message:send`, `message:edit`, `message:forward`."""

    message: SocketMessage


class HistoryResult(Out, kw_only=True):
    """Ack of `messages:history`."""

    messages: list[SocketMessage]
    has_more: bool


class ChatState(Out, kw_only=True):
    """One chat in the `sync` ack.

    `mutedUntil`: absent when the chat is not muted, null when muted forever.
    """

    last_seq: int
    last_rev: int
    unread: int
    conversation_id: str | None = None
    group_id: str | None = None
    muted_until: str | msgspec.UnsetType | None = msgspec.UNSET


class SyncResult(Out, kw_only=True):
    """Ack of `sync`."""

    chats: list[ChatState]


class ReadResult(Out, kw_only=True):
    """Ack of `message:read`: how many of the named messages were newly read."""

    count: int


class GroupResult(Out, kw_only=True):
    """Ack of group commands."""

    group: Group


class GroupsResult(Out, kw_only=True):
    """Ack of `groups:list`."""

    groups: list[Group]


class ReactionsResult(Out, kw_only=True):
    """Ack of `message:reaction:add` / `:remove`."""

    reactions: list[ReactionSummary]


class EditsResult(Out, kw_only=True):
    """Ack of `message:history:edits`."""

    edits: list[EditRecord]


class LastSeenResult(Out, kw_only=True):
    """Ack of `presence:last_seen`."""

    last_seen: list[LastSeen]


class PinsResult(Out, kw_only=True):
    """Ack of `pins:list`."""

    messages: list[SocketMessage]


class BroadcastOutcome(Out, kw_only=True):
    """One target's result in `message:broadcast`."""

    status: Literal["ok", "error", "retry"]
    conversation_id: str | None = None
    group_id: str | None = None
    message_id: str | None = None
    code: str | None = None


class BroadcastResult(Out, kw_only=True):
    """Ack of `message:broadcast`."""

    results: list[BroadcastOutcome]


class CallOfferResult(Out, kw_only=True):
    """Ack of `call:offer`."""

    call_id: str
    ice_servers: list[IceServer]


class CallsHistoryResult(Out, kw_only=True):
    """Ack of `calls:history`: newest first; `cursor` asks for the next page."""

    calls: list[CallRecord]
    has_more: bool
    cursor: str | None = None
