"""NATS subject names. Everything that builds a subject string goes through here.

Every part that comes from outside (a user id, a chat id) must be in the id alphabet
(`chat_contracts.ids`), and domains and actions in a stricter name alphabet: a `*`,
`>`, `.` or space in a subject would widen or break it (`rt.user.*` reaches every
user). The builders raise `ValueError` rather than build such a subject.
"""

from __future__ import annotations

import re
from typing import Final

from chat_contracts.ids import check_id

#: Commands: request/reply, one queue group per domain (`cmd.<domain>.<action>`).
COMMAND_PREFIX: Final = "cmd"
#: Fan-out towards gateways: `rt.user.<userId>` and `rt.room.<chatId>`.
USER_PREFIX: Final = "rt.user."
ROOM_PREFIX: Final = "rt.room."
#: ... and `rt.users`, which every gateway subscribes to: one delivery addressed to a
#: list of users (`bus.Fanout.users`), so that telling N users the same thing is one
#: message instead of N (a 1,024-member `group:create`).
USERS_FANOUT: Final = "rt.users"
#: Domain events between services: `evt.<domain>.<name>`.
EVENT_PREFIX: Final = "evt"

#: Domains, actions and event names are ours: lower-case words joined by `_`.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _name(value: str, what: str) -> str:
    if _NAME.fullmatch(value) is None:
        raise ValueError(f"{what} {value[:80]!r} is not a subject name (a-z, 0-9, _)")
    return value


def command(domain: str, action: str) -> str:
    """Subject of a command handled by the `domain` worker pool."""
    return f"{COMMAND_PREFIX}.{_name(domain, 'domain')}.{_name(action, 'action')}"


def commands_of(domain: str) -> str:
    """The wildcard a `domain` worker subscribes to: every `cmd.<domain>.<action>`."""
    return f"{COMMAND_PREFIX}.{_name(domain, 'domain')}.*"


def command_prefix(domain: str) -> str:
    """`cmd.<domain>.`: what precedes the action in the subjects of `commands_of`."""
    return f"{COMMAND_PREFIX}.{_name(domain, 'domain')}."


def user(user_id: str) -> str:
    """Subject a gateway subscribes to while it holds a socket of `user_id`."""
    return USER_PREFIX + check_id(user_id, "user id")


def room(chat_id: str) -> str:
    """Subject a gateway subscribes to while it holds a socket of a member of `chat_id`."""
    return ROOM_PREFIX + check_id(chat_id, "chat id")


def event(domain: str, name: str) -> str:
    """Subject of a domain event published by `domain`."""
    return f"{EVENT_PREFIX}.{_name(domain, 'domain')}.{_name(name, 'event name')}"


# Domain names (queue groups).
MESSAGES: Final = "messages"
GROUPS: Final = "groups"
USERS: Final = "users"
CALLS: Final = "calls"
MEDIA: Final = "media"


#: Room joins and leaves, each service's on its own `evt.<domain>.joins` (a NATS user
#: per service may publish only its own events), heard by every worker through this
#: wildcard (see `bus.RoomsJoined`).
ROOMS_JOINED_ANY: Final = f"{EVENT_PREFIX}.*.joins"


def rooms_joined(domain: str) -> str:
    """Where the `domain` service tells every worker of the room joins it made."""
    return event(domain, "joins")


#: Membership changes of groups (see `bus.MembershipChanged`).
GROUP_MEMBERSHIP_CHANGED: Final = event(GROUPS, "membership")


#: A callee with no connected socket but push devices is rung through them (`bus.CallPush`).
CALL_PUSH: Final = event(CALLS, "push")

#: Blocks and unblocks (see `bus.BlockChanged`): caches of block answers drop entries.
USER_BLOCK_CHANGED: Final = event(USERS, "block")

#: New messages for push delivery (`bus.MessagePushes`), kept in the JetStream stream
#: `PUSH_STREAM` with call pushes (`CALL_PUSH`), consumed by the notifications worker.
MESSAGE_PUSH: Final = event(MESSAGES, "new")
PUSH_STREAM: Final = "PUSH"


#: `cmd.<domain>.batch`: several commands of one domain in one request (`bus.CommandBatch`),
#: answered by one `bus.ReplyBatch`. No client route may use this action name.
BATCH_ACTION: Final = "batch"


def command_batch(domain: str) -> str:
    """Subject of a batch of commands for the `domain` worker pool."""
    return command(domain, BATCH_ACTION)


#: A message deleted for everyone (`bus.MessageDeletedForEveryone`); media listens.
MESSAGE_DELETED: Final = event(MESSAGES, "deleted")
#: The media service's command that vets a `mediaUrl` before a message stores it.
MEDIA_CLAIM: Final = "claim"
#: The JetStream stream keeping `MESSAGE_DELETED` until the media service handled it.
MEDIA_STREAM: Final = "MEDIA"
