"""Client→server payloads of PROTOCOL.md and frontend-requests.md, one Struct per event.

Field names on the wire are camelCase (``rename="camel"``); attribute names are
snake_case. Unknown fields are ignored so that newer clients keep working against an
older server; wrong types, missing required fields and broken cross-field rules
(``__post_init__``) fail decoding with a ``msgspec.ValidationError`` that names the
field. New fields always get defaults; a field's type never changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from chat_contracts import limits
from chat_contracts.ids import Id

__all__ = ["Id"]  # re-exported: older imports name `client.Id`
MessageType = Literal["TEXT", "IMAGE", "VIDEO", "AUDIO", "FILE"]
Role = Literal["ADMIN", "MEMBER"]
ManualStatus = Literal["online", "away", "busy"]
#: JavaScript's safe integer range: anything larger is a client bug or an attack (and
#: would overflow SQLite's 64-bit integers).
Seq = Annotated[int, Meta(ge=0, le=2**53 - 1)]
RetryCount = Annotated[int, Meta(ge=0, le=1_000)]


class Payload(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Base of every client payload."""


def _exactly_one(payload: Any, *names: str) -> None:
    given = [n for n in names if getattr(payload, n) is not None]
    if len(given) != 1:
        wire = " / ".join(_camel(n) for n in names)
        raise ValueError(f"exactly one of {wire} is required")


def _at_most_one(payload: Any, *names: str) -> None:
    if sum(getattr(payload, n) is not None for n in names) > 1:
        wire = " / ".join(_camel(n) for n in names)
        raise ValueError(f"at most one of {wire} may be given")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class ChatTarget(Payload, kw_only=True):
    """Names one chat: an existing DM, a DM by peer, or a group (exactly one)."""

    conversation_id: Id | None = None
    target_user_id: Id | None = None
    group_id: Id | None = None

    def __post_init__(self) -> None:
        _exactly_one(self, "conversation_id", "target_user_id", "group_id")


class OptionalChatTarget(Payload, kw_only=True):
    """A chat hint that may be absent (the message id alone identifies the chat)."""

    conversation_id: Id | None = None
    group_id: Id | None = None

    def __post_init__(self) -> None:
        _at_most_one(self, "conversation_id", "group_id")


# --- messages ---------------------------------------------------------------------


class MessageSend(ChatTarget, kw_only=True):
    """`message:send`."""

    client_message_id: Id
    type: MessageType = "TEXT"
    content: Annotated[str, Meta(max_length=limits.MAX_CONTENT_LENGTH)] | None = None
    media_url: Annotated[str, Meta(max_length=2_048)] | None = None
    reply_to_id: Id | None = None
    retry_count: RetryCount | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.type == "TEXT" and not (self.content and self.content.strip()):
            raise ValueError("`content` is required for TEXT messages")
        if self.type != "TEXT" and not self.media_url:
            raise ValueError("`mediaUrl` is required for media messages")


class HistoryRequest(ChatTarget, kw_only=True):
    """`messages:history`: newest first, `beforeSeq` exclusive."""

    before_seq: Annotated[int, Meta(ge=1, le=2**53 - 1)] | None = None
    limit: Annotated[int, Meta(ge=1, le=limits.MAX_HISTORY_LIMIT)] = limits.DEFAULT_HISTORY_LIMIT


class SyncCursor(Payload, kw_only=True):
    """The last `seq` (and change `rev`) a client holds for one chat; without `rev` the
    client gets new messages only."""

    conversation_id: Id | None = None
    group_id: Id | None = None
    seq: Seq
    rev: Seq | None = None

    def __post_init__(self) -> None:
        _exactly_one(self, "conversation_id", "group_id")


class SyncRequest(Payload, kw_only=True):
    """`sync`: chats not named in `since` are sent from the start (seq 0)."""

    since: Annotated[list[SyncCursor], Meta(max_length=limits.MAX_SYNC_CURSORS)] = []


class MessageRead(Payload, kw_only=True):
    """`message:read`, single (`messageId`) or bulk (`messageIds`) form."""

    message_id: Id | None = None
    message_ids: Annotated[list[Id], Meta(max_length=limits.MAX_READ_IDS)] | None = None
    conversation_id: Id | None = None
    target_user_id: Id | None = None
    group_id: Id | None = None
    read_at: datetime | None = None
    retry_count: RetryCount | None = None

    def __post_init__(self) -> None:
        _exactly_one(self, "message_id", "message_ids")
        if self.message_ids is not None and not self.message_ids:
            raise ValueError("`messageIds` must not be empty")
        _at_most_one(self, "conversation_id", "target_user_id", "group_id")

    @property
    def ids(self) -> list[str]:
        """Both forms as one list."""
        return self.message_ids if self.message_ids is not None else [self.message_id or ""]


class MessageEdit(OptionalChatTarget, kw_only=True):
    """`message:edit`."""

    message_id: Id
    content: Annotated[str, Meta(min_length=1, max_length=limits.MAX_CONTENT_LENGTH)]
    retry_count: RetryCount | None = None


class MessageDelete(OptionalChatTarget, kw_only=True):
    """`message:delete`."""

    message_id: Id
    delete_for_everyone: bool = False
    retry_count: RetryCount | None = None


class ReactionChange(OptionalChatTarget, kw_only=True):
    """`message:reaction:add` and `message:reaction:remove`."""

    message_id: Id
    emoji: Annotated[str, Meta(min_length=1, max_length=64)]
    retry_count: RetryCount | None = None


class EditsQuery(Payload, kw_only=True):
    """`message:history:edits`."""

    message_id: Id


class MessagePinChange(OptionalChatTarget, kw_only=True):
    """`message:pin` and `message:unpin`."""

    message_id: Id
    retry_count: RetryCount | None = None


class PinsList(ChatTarget, kw_only=True):
    """`pins:list`."""


class MessageForward(Payload, kw_only=True):
    """`message:forward`."""

    message_id: Id
    target_conversation_id: Id | None = None
    target_group_id: Id | None = None
    target_user_id: Id | None = None
    client_message_id: Id | None = None
    retry_count: RetryCount | None = None

    def __post_init__(self) -> None:
        _exactly_one(self, "target_conversation_id", "target_group_id", "target_user_id")


class MessageBroadcast(Payload, kw_only=True):
    """`message:broadcast`: at most 50 targets in all."""

    content: Annotated[str, Meta(min_length=1, max_length=limits.MAX_CONTENT_LENGTH)]
    type: MessageType = "TEXT"
    conversation_ids: list[Id] = []
    group_ids: list[Id] = []
    client_message_id: Id | None = None
    media_url: Annotated[str, Meta(max_length=2_048)] | None = None
    retry_count: RetryCount | None = None

    def __post_init__(self) -> None:
        total = len(self.conversation_ids) + len(self.group_ids)
        if total == 0:
            raise ValueError("at least one of conversationIds / groupIds is required")
        # More than MAX_BROADCAST_TARGETS (50) is the worker's LIMIT_EXCEEDED, not a
        # malformed payload.
        if self.type != "TEXT" and not self.media_url:
            raise ValueError("`mediaUrl` is required for media messages")


class SearchMessages(Payload, kw_only=True):
    """`search:messages`."""

    query: Annotated[str, Meta(min_length=1, max_length=limits.MAX_SEARCH_QUERY)]
    conversation_id: Id | None = None
    group_id: Id | None = None
    limit: Annotated[int, Meta(ge=1, le=limits.MAX_SEARCH_LIMIT)] = limits.DEFAULT_SEARCH_LIMIT
    cursor: Annotated[str, Meta(max_length=256)] | None = None

    def __post_init__(self) -> None:
        _at_most_one(self, "conversation_id", "group_id")


class ChatMute(Payload, kw_only=True):
    """`conversation:mute` / `conversation:unmute`; no `mutedUntil` = forever."""

    conversation_id: Id | None = None
    group_id: Id | None = None
    muted_until: datetime | None = None
    retry_count: RetryCount | None = None

    def __post_init__(self) -> None:
        _exactly_one(self, "conversation_id", "group_id")


# --- typing and presence ----------------------------------------------------------


class TypingChange(ChatTarget, kw_only=True):
    """`typing:start` / `typing:stop` (no ack)."""


class PresenceSet(Payload, kw_only=True):
    """`presence:set`: the manual status."""

    status: ManualStatus


class PresenceQuery(Payload, kw_only=True):
    """`presence:query`: pages the online members of a group."""

    group_id: Id
    cursor: Annotated[str, Meta(max_length=64)] | None = None
    limit: Annotated[int, Meta(ge=1, le=limits.MAX_PRESENCE_PAGE)] = limits.DEFAULT_PRESENCE_PAGE


class PresenceSubscribe(Payload, kw_only=True):
    """`presence:subscribe`: answers with `presence:state` for the first page."""

    group_id: Id


class LastSeenQuery(Payload, kw_only=True):
    """`presence:last_seen` asked by the client."""

    user_ids: Annotated[list[Id], Meta(min_length=1, max_length=500)]


class StatusSet(Payload, kw_only=True):
    """`status:set`: an empty `status` clears it."""

    status: Annotated[str, Meta(max_length=140)]
    emoji: Annotated[str, Meta(max_length=64)] | None = None
    expires_at: datetime | None = None


# --- groups -----------------------------------------------------------------------

GroupName = Annotated[str, Meta(min_length=1, max_length=limits.MAX_GROUP_NAME)]
Description = Annotated[str, Meta(max_length=limits.MAX_GROUP_DESCRIPTION)]
Url = Annotated[str, Meta(max_length=2_048)]


class GroupCreate(Payload, kw_only=True):
    """`group:create`: the creator becomes ADMIN and need not be listed."""

    name: GroupName
    description: Description | None = None
    avatar_url: Url | None = None
    member_ids: Annotated[list[Id], Meta(max_length=limits.MAX_GROUP_MEMBERS)] = []


class GroupUpdate(Payload, kw_only=True):
    """`group:update`: only the given fields change."""

    group_id: Id
    name: GroupName | None = None
    description: Description | None = None
    avatar_url: Url | None = None

    def __post_init__(self) -> None:
        if self.name is None and self.description is None and self.avatar_url is None:
            raise ValueError("one of name / description / avatarUrl is required")


class GroupRef(Payload, kw_only=True):
    """`group:delete` and `group:get`."""

    group_id: Id


class GroupMemberAdd(Payload, kw_only=True):
    """`group:member:add`."""

    group_id: Id
    user_id: Id
    role: Role = "MEMBER"


class GroupMemberRemove(Payload, kw_only=True):
    """`group:member:remove` (a member removing itself leaves)."""

    group_id: Id
    user_id: Id


class GroupMemberRole(Payload, kw_only=True):
    """`group:member:role`."""

    group_id: Id
    user_id: Id
    role: Role


class GroupsList(Payload, kw_only=True):
    """`groups:list`."""


# --- users ------------------------------------------------------------------------


class UserRef(Payload, kw_only=True):
    """`user:block` / `user:unblock`."""

    user_id: Id


class NotificationRegister(Payload, kw_only=True):
    """`notification:register`."""

    device_id: Id
    platform: Literal["ios", "android", "web"]
    #: FCM registration token (android, ios through FCM), APNs device token (ios, hex),
    #: or for web the browser's PushSubscription as JSON (`endpoint`, `keys.p256dh`,
    #: `keys.auth`).
    token: Annotated[str, Meta(min_length=1, max_length=4_096)]
    #: iOS only: "apns" when `token` is an APNs device token (default: an FCM token).
    provider: Literal["fcm", "apns"] | None = None
    #: False: pushes to this device carry no message text ("New message").
    previews: bool = True


class NotificationUnregister(Payload, kw_only=True):
    """`notification:unregister`."""

    device_id: Id


# --- calls ------------------------------------------------------------------------


class SessionDescription(Payload, kw_only=True):
    """An `RTCSessionDescriptionInit`, relayed untouched."""

    type: Literal["offer", "answer", "pranswer", "rollback"]
    sdp: Annotated[str, Meta(max_length=limits.MAX_SDP_LENGTH)] = ""


class IceCandidate(Payload, kw_only=True):
    """An `RTCIceCandidateInit`, relayed untouched."""

    candidate: Annotated[str, Meta(max_length=limits.MAX_ICE_CANDIDATE_LENGTH)] = ""
    sdp_mid: Annotated[str, Meta(max_length=limits.MAX_ICE_FIELD_LENGTH)] | None = None
    sdp_m_line_index: Annotated[int, Meta(ge=0, le=65_535)] | None = None
    username_fragment: Annotated[str, Meta(max_length=limits.MAX_ICE_FIELD_LENGTH)] | None = None


class CallOffer(Payload, kw_only=True):
    """`call:offer`."""

    target_user_id: Id
    offer: SessionDescription
    call_type: Literal["audio", "video"]


class CallAnswer(Payload, kw_only=True):
    """`call:answer`."""

    call_id: Id
    answer: SessionDescription


class CallIce(Payload, kw_only=True):
    """`call:ice-candidate`."""

    call_id: Id
    candidate: IceCandidate


class CallRef(Payload, kw_only=True):
    """`call:reject` / `call:end`."""

    call_id: Id


class CallsHistory(Payload, kw_only=True):
    """`calls:history`: the actor's calls, newest first; `cursor` from the previous page."""

    cursor: Id | None = None
    limit: Annotated[int, Meta(ge=1, le=limits.MAX_CALLS_HISTORY_LIMIT)] = (
        limits.DEFAULT_CALLS_HISTORY_LIMIT
    )
