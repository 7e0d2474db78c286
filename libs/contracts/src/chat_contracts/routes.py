"""The client event table: which payload each event takes and who answers it.

The gateway registers one Socket.IO handler per row: it validates the payload against
`payload`, then either forwards it as `cmd.<domain>.<action>` (request/reply) or, where
`domain` is ``GATEWAY``, handles it itself (typing and presence live in the gateway).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from chat_contracts import client as c
from chat_contracts import subjects as s

GATEWAY: Final = "gateway"


class Route(NamedTuple):
    """One client→server event."""

    event: str
    payload: type[c.Payload]
    domain: str
    action: str
    ack: bool = True


ROUTES: Final[tuple[Route, ...]] = (
    # messages
    Route("message:send", c.MessageSend, s.MESSAGES, "send"),
    Route("messages:history", c.HistoryRequest, s.MESSAGES, "history"),
    Route("sync", c.SyncRequest, s.MESSAGES, "sync"),
    Route("message:read", c.MessageRead, s.MESSAGES, "read"),
    Route("message:edit", c.MessageEdit, s.MESSAGES, "edit"),
    Route("message:delete", c.MessageDelete, s.MESSAGES, "delete"),
    Route("message:reaction:add", c.ReactionChange, s.MESSAGES, "reaction_add"),
    Route("message:reaction:remove", c.ReactionChange, s.MESSAGES, "reaction_remove"),
    Route("message:history:edits", c.EditsQuery, s.MESSAGES, "edits"),
    Route("message:pin", c.MessagePinChange, s.MESSAGES, "pin"),
    Route("message:unpin", c.MessagePinChange, s.MESSAGES, "unpin"),
    Route("pins:list", c.PinsList, s.MESSAGES, "pins"),
    Route("message:forward", c.MessageForward, s.MESSAGES, "forward"),
    Route("message:broadcast", c.MessageBroadcast, s.MESSAGES, "broadcast"),
    Route("search:messages", c.SearchMessages, s.MESSAGES, "search"),
    Route("conversation:mute", c.ChatMute, s.MESSAGES, "mute"),
    Route("conversation:unmute", c.ChatMute, s.MESSAGES, "unmute"),
    # groups
    Route("group:create", c.GroupCreate, s.GROUPS, "create"),
    Route("group:update", c.GroupUpdate, s.GROUPS, "update"),
    Route("group:delete", c.GroupRef, s.GROUPS, "delete"),
    Route("group:member:add", c.GroupMemberAdd, s.GROUPS, "member_add"),
    Route("group:member:remove", c.GroupMemberRemove, s.GROUPS, "member_remove"),
    Route("group:member:role", c.GroupMemberRole, s.GROUPS, "member_role"),
    Route("groups:list", c.GroupsList, s.GROUPS, "list"),
    Route("group:get", c.GroupRef, s.GROUPS, "get"),
    # users
    Route("status:set", c.StatusSet, s.USERS, "status_set"),
    Route("user:block", c.UserRef, s.USERS, "block"),
    Route("user:unblock", c.UserRef, s.USERS, "unblock"),
    Route("notification:register", c.NotificationRegister, s.USERS, "device_register"),
    Route("notification:unregister", c.NotificationUnregister, s.USERS, "device_unregister"),
    Route("presence:last_seen", c.LastSeenQuery, s.USERS, "last_seen"),
    # calls
    Route("call:offer", c.CallOffer, s.CALLS, "offer"),
    Route("call:answer", c.CallAnswer, s.CALLS, "answer"),
    Route("call:ice-candidate", c.CallIce, s.CALLS, "ice", ack=False),
    Route("call:reject", c.CallRef, s.CALLS, "reject"),
    Route("call:end", c.CallRef, s.CALLS, "end"),
    # handled inside the gateway
    Route("typing:start", c.TypingChange, GATEWAY, "typing_start", ack=False),
    Route("typing:stop", c.TypingChange, GATEWAY, "typing_stop", ack=False),
    Route("presence:set", c.PresenceSet, GATEWAY, "presence_set"),
    Route("presence:query", c.PresenceQuery, GATEWAY, "presence_query"),
    Route("presence:subscribe", c.PresenceSubscribe, GATEWAY, "presence_subscribe"),
)

BY_EVENT: Final = {r.event: r for r in ROUTES}
