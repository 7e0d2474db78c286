"""What this service asks the groups service: is a user in a group, and which groups."""

from __future__ import annotations

from typing import Protocol, TypeVar

import msgspec

from chat_contracts import DomainError, ErrorCode, RetryableError, subjects
from chat_contracts.bus import Actor, ChatIds, Empty, Membership, MembershipQuery, Reply
from chat_runtime.bus import UNAVAILABLE_RETRY_AFTER_MS, Bus

#: Below the gateway's 5 s deadline for the whole command, so that a slow groups pool
#: becomes our own `retry` ack rather than the gateway giving up on us.
DEFAULT_GROUPS_TIMEOUT_MS = 2_000

T = TypeVar("T")


class GroupDirectory(Protocol):
    """Group membership as the groups service knows it."""

    async def membership(self, actor: Actor, group_id: str) -> Membership:
        """Whether `group_id` exists and the actor's role in it (None = not a member)."""
        ...

    async def mine(self, actor: Actor) -> list[str]:
        """Ids of every group the actor belongs to."""
        ...


class GroupsReplyError(Exception):
    """The groups service answered `ok` with a result we cannot read (a contract bug)."""


class BusGroupDirectory:
    """`GroupDirectory` over `cmd.groups.membership` and `cmd.groups.mine`."""

    _membership = msgspec.msgpack.Decoder(Membership)
    _chat_ids = msgspec.msgpack.Decoder(ChatIds)

    def __init__(self, bus: Bus, *, timeout_ms: int = DEFAULT_GROUPS_TIMEOUT_MS) -> None:
        self._bus = bus
        self._timeout_ms = timeout_ms

    async def membership(self, actor: Actor, group_id: str) -> Membership:
        """Ask `cmd.groups.membership` for the actor in `group_id`."""
        query = MembershipQuery(group_id=group_id, user_id=actor.user_id)
        reply = await self._bus.command(
            subjects.GROUPS, "membership", actor, query, timeout_ms=self._timeout_ms
        )
        return _decode(self._membership, reply)

    async def mine(self, actor: Actor) -> list[str]:
        """Ask `cmd.groups.mine` for the actor's groups."""
        reply = await self._bus.command(
            subjects.GROUPS, "mine", actor, Empty(), timeout_ms=self._timeout_ms
        )
        return _decode(self._chat_ids, reply).chat_ids


def _decode(decoder: msgspec.msgpack.Decoder[T], reply: Reply) -> T:
    if reply.status == "retry":
        raise RetryableError(
            _code(reply.code, ErrorCode.UNAVAILABLE),
            reply.error or "groups service unavailable",
            retry_after_ms=reply.retry_after or UNAVAILABLE_RETRY_AFTER_MS,
        )
    if reply.status == "error":
        raise DomainError(
            _code(reply.code, ErrorCode.INTERNAL),
            reply.error or "groups refused",
            field=reply.field,
        )
    if reply.result is None:
        raise GroupsReplyError("groups answered ok without a result")
    try:
        return decoder.decode(reply.result)
    except msgspec.DecodeError as exc:
        # Not a ValidationError for the client: the Router would blame the client's
        # payload, while this is a mismatch between two services.
        raise GroupsReplyError(f"unreadable groups reply: {exc}") from None


def _code(code: str | None, default: ErrorCode) -> ErrorCode:
    try:
        return ErrorCode(code) if code else default
    except ValueError:
        return default
