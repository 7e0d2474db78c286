"""The client event table: which payload each event takes and who answers it.

The gateway registers one Socket.IO handler per row: it validates the payload against
`payload`, then either forwards it as `cmd.<domain>.<action>` (request/reply) or, where
`domain` is ``GATEWAY``, handles it itself (typing and presence live in the gateway).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from chat_contracts import client as c
from chat_contracts import server as o
from chat_contracts import subjects as s

GATEWAY: Final = "gateway"


class Route(NamedTuple):
    """One client→server event."""

    event: str
    payload: type[c.Payload]
    domain: str
    action: str
    #: The ack's result fields (merged next to `status`); None = no ack at all.
    result: type[o.Out] | None = o.Empty

    @property
    def ack(self) -> bool:
        """Whether the client gets an acknowledgement."""
        return self.result is not None


ROUTES: Final[tuple[Route, ...]] = (
    # messages
    Route("message:send", c.MessageSend, s.MESSAGES, "send", o.MessageResult),
    Route("messages:history", c.HistoryRequest, s.MESSAGES, "history", o.HistoryResult),
    Route("sync", c.SyncRequest, s.MESSAGES, "sync", o.SyncResult),
    Route("message:read", c.MessageRead, s.MESSAGES, "read", o.ReadResult),
    Route("message:edit", c.MessageEdit, s.MESSAGES, "edit", o.MessageResult),
    Route("message:delete", c.MessageDelete, s.MESSAGES, "delete", o.Empty),
    Route("message:reaction:add", c.ReactionChange, s.MESSAGES, "reaction_add", o.ReactionsResult),
    Route(
        "message:reaction:remove",
        c.ReactionChange,
        s.MESSAGES,
        "reaction_remove",
        o.ReactionsResult,
    ),
    Route("message:history:edits", c.EditsQuery, s.MESSAGES, "edits", o.EditsResult),
    Route("message:pin", c.MessagePinChange, s.MESSAGES, "pin", o.Empty),
    Route("message:unpin", c.MessagePinChange, s.MESSAGES, "unpin", o.Empty),
    Route("pins:list", c.PinsList, s.MESSAGES, "pins", o.PinsResult),
    Route("message:forward", c.MessageForward, s.MESSAGES, "forward", o.MessageResult),
    Route("message:broadcast", c.MessageBroadcast, s.MESSAGES, "broadcast", o.BroadcastResult),
    Route("search:messages", c.SearchMessages, s.MESSAGES, "search", o.SearchResults),
    Route("conversation:mute", c.ChatMute, s.MESSAGES, "mute", o.Empty),
    Route("conversation:unmute", c.ChatMute, s.MESSAGES, "unmute", o.Empty),
    # groups
    Route("group:create", c.GroupCreate, s.GROUPS, "create", o.GroupResult),
    Route("group:update", c.GroupUpdate, s.GROUPS, "update", o.GroupResult),
    Route("group:delete", c.GroupRef, s.GROUPS, "delete", o.Empty),
    Route("group:member:add", c.GroupMemberAdd, s.GROUPS, "member_add", o.GroupResult),
    Route("group:member:remove", c.GroupMemberRemove, s.GROUPS, "member_remove", o.GroupResult),
    Route("group:member:role", c.GroupMemberRole, s.GROUPS, "member_role", o.GroupResult),
    Route("groups:list", c.GroupsList, s.GROUPS, "list", o.GroupsResult),
    Route("group:get", c.GroupRef, s.GROUPS, "get", o.GroupResult),
    # users
    Route("status:set", c.StatusSet, s.USERS, "status_set", o.Empty),
    Route("user:block", c.UserRef, s.USERS, "block", o.Empty),
    Route("user:unblock", c.UserRef, s.USERS, "unblock", o.Empty),
    Route("notification:register", c.NotificationRegister, s.USERS, "device_register", o.Empty),
    Route(
        "notification:unregister", c.NotificationUnregister, s.USERS, "device_unregister", o.Empty
    ),
    Route("presence:last_seen", c.LastSeenQuery, s.USERS, "last_seen", o.LastSeenResult),
    # calls
    Route("call:offer", c.CallOffer, s.CALLS, "offer", o.CallOfferResult),
    Route("call:answer", c.CallAnswer, s.CALLS, "answer", o.Empty),
    Route("call:ice-candidate", c.CallIce, s.CALLS, "ice", None),
    Route("call:reject", c.CallRef, s.CALLS, "reject", o.Empty),
    Route("call:end", c.CallRef, s.CALLS, "end", o.Empty),
    # handled inside the gateway
    Route("typing:start", c.TypingChange, GATEWAY, "typing_start", None),
    Route("typing:stop", c.TypingChange, GATEWAY, "typing_stop", None),
    Route("presence:set", c.PresenceSet, GATEWAY, "presence_set", o.Empty),
    Route("presence:query", c.PresenceQuery, GATEWAY, "presence_query", o.PresencePage),
    Route("presence:subscribe", c.PresenceSubscribe, GATEWAY, "presence_subscribe", o.Empty),
)

BY_EVENT: Final = {r.event: r for r in ROUTES}

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
