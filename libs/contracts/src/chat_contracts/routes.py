"""The client event table: which payload each event takes, who answers it, and how.

The gateway registers one Socket.IO handler per row: it validates the payload against
`payload`, then either forwards it as `cmd.<domain>.<action>` (request/reply) or, where
`domain` is ``GATEWAY``, handles it itself (typing and presence live in the gateway).

Each row is a module constant typed `Route[Payload, Result]`, so that a worker
registers its handler with `Router.route(routes.MESSAGE_SEND, handler)` and mypy checks
the handler's `Command[...]` payload and its result against the row. A row whose
handler does not exist yet says `served=False`: the gateway answers it with
NOT_IMPLEMENTED at once, and a worker that registers it (or lacks a served one of its
domain) refuses to start. Flip the flag in the same change that adds the handler.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from chat_contracts import client as c
from chat_contracts import server as o
from chat_contracts import services
from chat_contracts import subjects as s

GATEWAY: Final = "gateway"

P = TypeVar("P", bound=c.Payload)
R = TypeVar("R")

#: The `result` of an event without an acknowledgement: its handler returns None.
NO_ACK: Final[type[None]] = type(None)


@dataclass(frozen=True, slots=True)
class Route(Generic[P, R]):
    """One client→server event."""

    event: str
    payload: type[P]
    domain: str
    action: str
    #: The ack's result fields (merged next to `status`); `NO_ACK` = no ack at all.
    result: type[R]
    #: False while no worker handles it: the gateway answers NOT_IMPLEMENTED.
    served: bool = True

    @property
    def ack(self) -> bool:
        """Whether the client gets an acknowledgement."""
        return self.result is not NO_ACK


# --- messages ----------------------------------------------------------------

MESSAGE_SEND: Final = Route("message:send", c.MessageSend, s.MESSAGES, "send", o.MessageResult)
MESSAGES_HISTORY: Final = Route(
    "messages:history",
    c.HistoryRequest,
    s.MESSAGES,
    "history",
    o.HistoryResult,
)
SYNC: Final = Route("sync", c.SyncRequest, s.MESSAGES, "sync", o.SyncResult)
MESSAGE_READ: Final = Route("message:read", c.MessageRead, s.MESSAGES, "read", o.ReadResult)
MESSAGE_EDIT: Final = Route(
    "message:edit",
    c.MessageEdit,
    s.MESSAGES,
    "edit",
    o.MessageResult,
)
MESSAGE_DELETE: Final = Route(
    "message:delete",
    c.MessageDelete,
    s.MESSAGES,
    "delete",
    o.Empty,
)
MESSAGE_REACTION_ADD: Final = Route(
    "message:reaction:add",
    c.ReactionChange,
    s.MESSAGES,
    "reaction_add",
    o.ReactionsResult,
)
MESSAGE_REACTION_REMOVE: Final = Route(
    "message:reaction:remove",
    c.ReactionChange,
    s.MESSAGES,
    "reaction_remove",
    o.ReactionsResult,
)
MESSAGE_HISTORY_EDITS: Final = Route(
    "message:history:edits",
    c.EditsQuery,
    s.MESSAGES,
    "edits",
    o.EditsResult,
)
MESSAGE_PIN: Final = Route(
    "message:pin",
    c.MessagePinChange,
    s.MESSAGES,
    "pin",
    o.Empty,
)
MESSAGE_UNPIN: Final = Route(
    "message:unpin",
    c.MessagePinChange,
    s.MESSAGES,
    "unpin",
    o.Empty,
)
PINS_LIST: Final = Route("pins:list", c.PinsList, s.MESSAGES, "pins", o.PinsResult)
MESSAGE_FORWARD: Final = Route(
    "message:forward",
    c.MessageForward,
    s.MESSAGES,
    "forward",
    o.MessageResult,
)
MESSAGE_BROADCAST: Final = Route(
    "message:broadcast",
    c.MessageBroadcast,
    s.MESSAGES,
    "broadcast",
    o.BroadcastResult,
)
SEARCH_MESSAGES: Final = Route(
    "search:messages",
    c.SearchMessages,
    s.MESSAGES,
    "search",
    o.SearchResults,
)
CONVERSATION_MUTE: Final = Route(
    "conversation:mute",
    c.ChatMute,
    s.MESSAGES,
    "mute",
    o.Empty,
)
CONVERSATION_UNMUTE: Final = Route(
    "conversation:unmute",
    c.ChatMute,
    s.MESSAGES,
    "unmute",
    o.Empty,
)

# --- groups ------------------------------------------------------------------

GROUP_CREATE: Final = Route("group:create", c.GroupCreate, s.GROUPS, "create", o.GroupResult)
GROUP_UPDATE: Final = Route("group:update", c.GroupUpdate, s.GROUPS, "update", o.GroupResult)
GROUP_DELETE: Final = Route("group:delete", c.GroupRef, s.GROUPS, "delete", o.Empty)
GROUP_MEMBER_ADD: Final = Route(
    "group:member:add",
    c.GroupMemberAdd,
    s.GROUPS,
    "member_add",
    o.GroupResult,
)
GROUP_MEMBER_REMOVE: Final = Route(
    "group:member:remove",
    c.GroupMemberRemove,
    s.GROUPS,
    "member_remove",
    o.GroupResult,
)
GROUP_MEMBER_ROLE: Final = Route(
    "group:member:role",
    c.GroupMemberRole,
    s.GROUPS,
    "member_role",
    o.GroupResult,
)
GROUPS_LIST: Final = Route("groups:list", c.GroupsList, s.GROUPS, "list", o.GroupsResult)
GROUP_GET: Final = Route("group:get", c.GroupRef, s.GROUPS, "get", o.GroupResult)

# --- users -------------------------------------------------------------------

STATUS_SET: Final = Route("status:set", c.StatusSet, s.USERS, "status_set", o.Empty)
USER_BLOCK: Final = Route("user:block", c.UserRef, s.USERS, "block", o.Empty)
USER_UNBLOCK: Final = Route("user:unblock", c.UserRef, s.USERS, "unblock", o.Empty)
NOTIFICATION_REGISTER: Final = Route(
    "notification:register",
    c.NotificationRegister,
    s.USERS,
    "device_register",
    o.Empty,
)
NOTIFICATION_UNREGISTER: Final = Route(
    "notification:unregister",
    c.NotificationUnregister,
    s.USERS,
    "device_unregister",
    o.Empty,
)
PRESENCE_LAST_SEEN: Final = Route(
    "presence:last_seen",
    c.LastSeenQuery,
    s.USERS,
    "last_seen",
    o.LastSeenResult,
)

# --- calls (optional component) ----------------------------------------------

CALL_OFFER: Final = Route(
    "call:offer",
    c.CallOffer,
    s.CALLS,
    "offer",
    o.CallOfferResult,
)
CALL_ANSWER: Final = Route("call:answer", c.CallAnswer, s.CALLS, "answer", o.Empty)
CALL_ICE_CANDIDATE: Final = Route(
    "call:ice-candidate",
    c.CallIce,
    s.CALLS,
    "ice",
    NO_ACK,
)
CALL_REJECT: Final = Route("call:reject", c.CallRef, s.CALLS, "reject", o.Empty)
CALL_END: Final = Route("call:end", c.CallRef, s.CALLS, "end", o.Empty)
CALLS_HISTORY: Final = Route(
    "calls:history",
    c.CallsHistory,
    s.CALLS,
    "history",
    o.CallsHistoryResult,
)

# --- handled inside the gateway ----------------------------------------------

TYPING_START: Final = Route("typing:start", c.TypingChange, GATEWAY, "typing_start", NO_ACK)
TYPING_STOP: Final = Route("typing:stop", c.TypingChange, GATEWAY, "typing_stop", NO_ACK)
PRESENCE_SET: Final = Route("presence:set", c.PresenceSet, GATEWAY, "presence_set", o.Empty)
PRESENCE_QUERY: Final = Route(
    "presence:query",
    c.PresenceQuery,
    GATEWAY,
    "presence_query",
    o.PresencePage,
)
PRESENCE_SUBSCRIBE: Final = Route(
    "presence:subscribe",
    c.PresenceSubscribe,
    GATEWAY,
    "presence_subscribe",
    o.Empty,
)

#: Every client event, in the order of the sections above.
ROUTES: Final[tuple[Route[Any, Any], ...]] = (
    MESSAGE_SEND,
    MESSAGES_HISTORY,
    SYNC,
    MESSAGE_READ,
    MESSAGE_EDIT,
    MESSAGE_DELETE,
    MESSAGE_REACTION_ADD,
    MESSAGE_REACTION_REMOVE,
    MESSAGE_HISTORY_EDITS,
    MESSAGE_PIN,
    MESSAGE_UNPIN,
    PINS_LIST,
    MESSAGE_FORWARD,
    MESSAGE_BROADCAST,
    SEARCH_MESSAGES,
    CONVERSATION_MUTE,
    CONVERSATION_UNMUTE,
    GROUP_CREATE,
    GROUP_UPDATE,
    GROUP_DELETE,
    GROUP_MEMBER_ADD,
    GROUP_MEMBER_REMOVE,
    GROUP_MEMBER_ROLE,
    GROUPS_LIST,
    GROUP_GET,
    STATUS_SET,
    USER_BLOCK,
    USER_UNBLOCK,
    NOTIFICATION_REGISTER,
    NOTIFICATION_UNREGISTER,
    PRESENCE_LAST_SEEN,
    CALL_OFFER,
    CALL_ANSWER,
    CALL_ICE_CANDIDATE,
    CALL_REJECT,
    CALL_END,
    CALLS_HISTORY,
    TYPING_START,
    TYPING_STOP,
    PRESENCE_SET,
    PRESENCE_QUERY,
    PRESENCE_SUBSCRIBE,
)

BY_EVENT: Final = {r.event: r for r in ROUTES}


def unserved(
    deployed_optional: Collection[str], table: Collection[Route[Any, Any]] = ROUTES
) -> frozenset[str]:
    """The events a gateway answers with NOT_IMPLEMENTED: routes no worker serves yet,
    and those of optional services (calls, media) the deployment does not run."""
    return frozenset(
        r.event
        for r in table
        if not r.served or (r.domain in services.OPTIONAL and r.domain not in deployed_optional)
    )


#: Server→client events and their payloads.
SERVER_EVENTS: Final[dict[str, type[o.Out]]] = {
    "message:new": o.SocketMessage,
    "message:batch": o.MessageBatch,
    "message:read": o.ReadEvent,
    "message:edited": o.MessageEdited,
    "message:deleted": o.MessageDeleted,
    "message:reaction:added": o.ReactionAdded,
    "message:reaction:removed": o.ReactionRemoved,
    "message:pinned": o.MessagePinned,
    "message:unpinned": o.MessageUnpinned,
    "typing:start": o.TypingEvent,
    "typing:stop": o.TypingEvent,
    "presence:update": o.PresenceUpdate,
    "presence:state": o.PresencePage,
    "presence:last_seen": o.LastSeen,
    "status:updated": o.StatusUpdated,
    "group:member:added": o.GroupMemberAdded,
    "group:member:removed": o.GroupMemberRemoved,
    "group:member:role_changed": o.GroupMemberRoleChanged,
    "group:updated": o.GroupUpdated,
    "group:deleted": o.GroupDeleted,
    "search:results": o.SearchResults,
    "conversation:muted": o.ChatMuted,
    "conversation:unmuted": o.ChatUnmuted,
    "user:blocked": o.UserBlocked,
    "user:unblocked": o.UserUnblocked,
    "upload:progress": o.UploadProgress,
    "upload:complete": o.UploadComplete,
    "upload:failed": o.UploadFailed,
    "call:incoming": o.CallIncoming,
    "call:accepted": o.CallAccepted,
    "call:rejected": o.CallRejected,
    "call:ended": o.CallEnded,
    "call:ice-candidate": o.CallIceEvent,
}
