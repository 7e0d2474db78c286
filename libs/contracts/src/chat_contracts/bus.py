"""What travels on NATS: command envelopes, replies, fan-out deliveries, internal queries.

All of it is msgpack (``msgspec.msgpack``); the client-facing part of a fan-out is JSON
bytes encoded once by the publisher and handed to every socket as is.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from chat_contracts.client import MessageType, Role
from chat_contracts.ids import Id

T = TypeVar("T")


class Actor(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """Who asks: the authenticated user (claims `sub`, `name`, `picture`)."""

    user_id: Id
    name: str
    avatar: str | None = None


class Command(msgspec.Struct, Generic[T], kw_only=True, omit_defaults=True):
    """A request on `cmd.<domain>.<action>`.

    `origin_sid` names the socket that sent it, so that the fan-out can skip that
    socket (it has the ack) while the user's other sockets get the event.
    """

    actor: Actor
    payload: T
    origin_sid: str | None = None


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer to a command: an ack without its callback.

    `result` holds the msgpack-encoded result Struct (camelCase keys) as a bin field
    (msgspec cannot decode `Raw | None`); the gateway merges its keys into the ack next
    to `status`.
    """

    status: Literal["ok", "error", "retry"]
    result: bytes | None = None
    code: str | None = None
    error: str | None = None
    field: str | None = None
    retry_after: int | None = None


class Frame(msgspec.Struct, array_like=True):
    """One more event of a `Fanout` (its JSON payload encoded once by the publisher)."""

    event: str
    data: bytes


class Fanout(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A delivery on `rt.user.<id>` or `rt.room.<id>` to the gateways holding those sockets.

    - `event`/`data`: the Socket.IO event and its JSON payload, encoded once.
    - `to_sid`: only this socket gets it (`message:batch` answers one socket's `sync`).
    - `skip_sid`: a socket that must not get it (the one that caused it; it has the ack).
    - `skip_user`: a user whose sockets must not get it (typing goes to *other* members).
    - `rooms`/`dedupe_id`: the same event published on several rooms (presence goes to
      every chat of a user); a gateway emits it once to the union of its local sockets in
      `rooms` and drops the later copies with the same `dedupe_id`.
    - `join`/`leave`: control for `rt.user.<id>`: that user's local sockets enter or leave
      these rooms now. Applied before the events of the same delivery.
    - `more`: further events delivered right after `event`, in order.
    - `close_room`: the room is gone (group deleted): every local socket leaves it.
    - `users`: only on `rt.users` (every gateway hears it): the recipients. Each of their
      local sockets gets `join` applied and then the events, as if the same delivery had
      come on each `rt.user.<id>` — one message instead of one per user.
    - `once_id`/`room_copy`: a room event published while the room has members who
      joined in the last seconds (`chat_runtime.joins`) carries a `once_id`, and a copy
      with the same `once_id` and `room_copy` = the room goes to those members' own
      subjects (their gateway's room subscription may not have reached the publisher's
      node yet). A gateway gives each socket the event once, from whichever copy comes
      first; a copy reaches all local sockets of its users.

    Rule for membership changes: the events a user must see about its *own* joining or
    leaving travel on `rt.user.<id>` in the same delivery as the control. A room event
    published right after a join would race the gateway's new subscription (NATS drops
    what arrives before the SUB), and a leave on the user subject could overtake a room
    event (nats-py runs each subscription's callbacks in its own task).
    """

    event: str = ""
    data: bytes = b""
    to_sid: str | None = None
    skip_sid: str | None = None
    skip_user: str | None = None
    rooms: list[Id] = []
    dedupe_id: str | None = None
    join: list[str] = []
    leave: list[str] = []
    more: list[Frame] = []
    close_room: bool = False
    users: list[Id] = []
    once_id: str | None = None
    room_copy: Id | None = None
    #: Users whose sockets must not get it (privacy: the users with a block between them
    #: and the subject of a presence or status event).
    skip_users: list[Id] = []
    #: The chat `seq` of a `message:new` on a room subject: gateways hand a room's events
    #: out in seq order (chat_gateway.ordering), whichever worker published first.
    seq: int | None = None


class RoomsJoined(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`evt.<domain>.joins` (`subjects.rooms_joined`): `users` joined (or, with `left`,
    left) `rooms` just now. Published by the worker that made the change, before its
    reply; every worker keeps the recent ones (`chat_runtime.joins`)."""

    users: list[Id]
    rooms: list[Id]
    left: bool = False


# --- internal queries between services and from the gateway ------------------------


class Empty(msgspec.Struct, kw_only=True):
    """A query with no arguments besides the actor."""


class MembershipQuery(msgspec.Struct, kw_only=True, rename="camel"):
    """`cmd.groups.membership`: is `user_id` a member of `group_id`, and in what role."""

    group_id: Id
    user_id: Id


class Membership(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Answer to `cmd.groups.membership`; `role` None = not a member (or no such group)."""

    exists: bool
    member_count: int = 0
    role: Role | None = None


class MembershipChanged(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """`evt.groups.membership`: a member joined, left or changed role (`user_id`), or the
    whole group is gone (`user_id` None). Services caching membership drop their entry.
    """

    group_id: Id
    user_id: Id | None = None


class MembersQuery(msgspec.Struct, kw_only=True, rename="camel"):
    """`cmd.groups.members`: every member id of a group the actor belongs to."""

    group_id: Id


class Members(msgspec.Struct, kw_only=True, rename="camel"):
    """Answer to `cmd.groups.members`."""

    user_ids: list[Id]


class ChatIds(msgspec.Struct, kw_only=True, rename="camel"):
    """Answer to `cmd.groups.mine` / `cmd.messages.mine`: the actor's chats."""

    chat_ids: list[Id]


class PresenceChanged(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """`cmd.users.presence` (a request, answered empty once published to the contacts;
    the gateway retries a `retry` answer): a presence change the gateway announced.

    The users service keeps profiles and last-seen times from it.
    """

    user_id: Id
    status: str
    at: str
    name: str | None = None
    avatar: str | None = None
    #: The user's chats as the announcing gateway knows them (its rooms): the contacts
    #: the change is published to, without the users service asking for them again.
    rooms: list[Id] = []


# --- Cross-service queries fixed up front so the people, calls and messages work agree ---


class BlockQuery(msgspec.Struct, kw_only=True, rename="camel"):
    """`cmd.users.block_state`: is there a block between two users, in either direction?

    The one function every service reads the blocking rule through (messages for DMs,
    calls for call offers); answered by the users service from its own store.
    """

    user_id: Id
    other_user_id: Id


class BlockState(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """The answer to `BlockQuery`: `blocked` when either user blocks the other."""

    blocked: bool
    #: The user (of the two) who placed the block, when there is one.
    blocked_by: Id | None = None


class DevicesQuery(msgspec.Struct, kw_only=True, rename="camel"):
    """`cmd.users.devices`: how many push devices `user_id` has registered."""

    user_id: Id


class Devices(msgspec.Struct, kw_only=True, rename="camel"):
    """The answer to `DevicesQuery`."""

    count: int


class CallPush(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """`evt.calls.push`: ring an offline callee through its push devices (high priority).

    Published by the calls service; delivered by the notifications worker (users).
    """

    call_id: Id
    callee_id: Id
    caller_id: Id
    caller_name: str
    call_type: str


# --- people: blocks, presence fan-out, hidden sets (users service) -----------------


class HiddenQuery(msgspec.Struct, kw_only=True, rename="camel"):
    """`cmd.users.hidden`: every user with a block between them and `user_id` (either way).

    The set form of `BlockQuery` (same rule): caches that check many pairs of one user
    (the messages send path, the gateway's typing relay) ask once per user.
    """

    user_id: Id


class Hidden(msgspec.Struct, kw_only=True, rename="camel"):
    """The answer to `HiddenQuery`."""

    user_ids: list[Id]


class BlockChanged(msgspec.Struct, kw_only=True, rename="camel"):
    """`evt.users.block`: `blocker_id` blocked (`blocked` True) or unblocked `blocked_id`.

    Published after the write is durable; every cache of block answers drops both users.
    """

    blocker_id: Id
    blocked_id: Id
    blocked: bool


# --- push notifications -----------------------------------------------------------


class MessagePush(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A new message, for push delivery (one per stored, non-duplicate message).

    The notifications worker (users) pushes it to every recipient without a connected
    socket. `recipient_ids` is set for a DM (its peer); for a group the worker asks the
    groups service for the members.
    """

    message_id: Id
    chat_id: Id
    sender_id: Id
    sender_name: str
    type: str
    content: str = ""
    recipient_ids: list[Id] = []
    created_at: str = ""


class MessagePushes(msgspec.Struct, kw_only=True, rename="camel"):
    """`evt.messages.new` (JetStream stream `PUSH`): the new messages of a few ms of one
    messages worker, in send order (one stream write per batch, not per message)."""

    events: list[MessagePush]


class MutedQuery(msgspec.Struct, kw_only=True, rename="camel"):
    """`cmd.messages.muted`: which of `user_ids` have `chat_id` muted now (no push)."""

    chat_id: Id
    user_ids: list[Id]


class Muted(msgspec.Struct, kw_only=True, rename="camel"):
    """The answer to `MutedQuery`."""

    user_ids: list[Id]


# --- batches: the gateway's commands of one event-loop turn in one request ---------


class BatchItem(msgspec.Struct, array_like=True):
    """One command of a `CommandBatch`: its action, its encoded `Command`, and the socket
    that sent it (the commands of one socket run in order)."""

    action: str
    command: msgspec.Raw
    origin_sid: str | None = None


class CommandBatch(msgspec.Struct, kw_only=True):
    """`cmd.<domain>.batch`: commands of one domain that a gateway received in one loop
    turn. The worker runs them as it runs single commands (same handlers, same
    idempotency keys), those of one socket (`origin_sid`) in order, the others at once so
    that their writes reach the store's group commit together; it answers one
    `ReplyBatch` with one reply per item, in item order."""

    items: list[BatchItem]


class ReplyBatch(msgspec.Struct, kw_only=True):
    """The answer to a `CommandBatch`: `replies[i]` answers `items[i]`."""

    replies: list[Reply]


# --- media ------------------------------------------------------------------------


class MediaClaim(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """`cmd.media.claim`: may the actor put `media_url` into a message, and where it goes.

    Asked by the messages service before it stores a message (or a forward) that carries
    a `mediaUrl`. The media service answers `VALIDATION_ERROR` (field `mediaUrl`) unless
    it issued that exact URL to the actor (`forward` false) or the actor may read it
    (`forward` true), and records the chat as a place the media was sent to: its readers
    may download it from then on. Exactly one of `group_id`, `conversation_id` and
    `peer_user_id` (a DM named by the other user) names the chat.
    """

    media_url: Annotated[str, Meta(max_length=2_048)]
    message_type: MessageType
    message_id: Id
    client_message_id: Id | None = None
    group_id: Id | None = None
    conversation_id: Id | None = None
    peer_user_id: Id | None = None
    forward: bool = False


class MediaClaimed(msgspec.Struct, kw_only=True, rename="camel"):
    """The answer to `MediaClaim`: the media's id and the canonical URL to store."""

    media_id: Id
    media_url: str


class MessageDeletedForEveryone(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """`evt.messages.deleted`: a message was deleted for everyone (after the write).

    The media service stops serving a message's media once no other message refers to
    it; `client_message_id` lets it match a claim made under a retried send.
    """

    message_id: Id
    chat_id: Id
    sender_id: Id
    client_message_id: Id | None = None
    media_url: str | None = None
