"""NATS subject names. Everything that builds a subject string goes through here."""

from __future__ import annotations

from typing import Final

#: Commands: request/reply, one queue group per domain (`cmd.<domain>.<action>`).
COMMAND_PREFIX: Final = "cmd"
#: Fan-out towards gateways: `rt.user.<userId>` and `rt.room.<chatId>`.
USER_PREFIX: Final = "rt.user."
ROOM_PREFIX: Final = "rt.room."
#: Domain events between services: `evt.<domain>.<name>`.
EVENT_PREFIX: Final = "evt"


def command(domain: str, action: str) -> str:
    """Subject of a command handled by the `domain` worker pool."""
    return f"{COMMAND_PREFIX}.{domain}.{action}"


def user(user_id: str) -> str:
    """Subject a gateway subscribes to while it holds a socket of `user_id`."""
    return USER_PREFIX + user_id


def room(chat_id: str) -> str:
    """Subject a gateway subscribes to while it holds a socket of a member of `chat_id`."""
    return ROOM_PREFIX + chat_id


def event(domain: str, name: str) -> str:
    """Subject of a domain event published by `domain`."""
    return f"{EVENT_PREFIX}.{domain}.{name}"


# Domain names (queue groups).
MESSAGES: Final = "messages"
GROUPS: Final = "groups"
USERS: Final = "users"
CALLS: Final = "calls"
MEDIA: Final = "media"


#: Membership changes of groups (see `bus.MembershipChanged`).
GROUP_MEMBERSHIP_CHANGED: Final = f"{EVENT_PREFIX}.{GROUPS}.membership"
