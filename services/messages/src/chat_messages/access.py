"""Who may do what: the checks every messages command runs before its store call.

The send path's checks live in one place (`Access.post`), so that rules added later
(blocks on DMs, media references) apply to `message:send`, `message:forward` and
`message:broadcast` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chat_contracts import DomainError, ErrorCode
from chat_contracts.bus import Actor
from chat_contracts.client import ChatTarget, MessageType
from chat_messages import domain
from chat_messages.domain import GroupTarget, StoredMessage, Target
from chat_messages.groups import GroupDirectory
from chat_messages.store import MessageStore


class NamesMessage(Protocol):
    """A payload naming a message, with an optional hint of its chat."""

    @property
    def message_id(self) -> str: ...
    @property
    def conversation_id(self) -> str | None: ...
    @property
    def group_id(self) -> str | None: ...


@dataclass(frozen=True)
class MessageAccess:
    """A message the actor may read, and the actor's standing in its chat."""

    message: StoredMessage
    #: The actor is an ADMIN of the message's group (always False in a DM).
    is_admin: bool

    @property
    def is_group(self) -> bool:
        """True when the message is in a group."""
        return not domain.is_dm(self.message.chat_id)


class Access:
    """The permission checks, bound to the store and the groups service."""

    def __init__(self, store: MessageStore, groups: GroupDirectory) -> None:
        self._store = store
        self._groups = groups

    async def target(self, actor: Actor, chat: ChatTarget) -> Target:
        """The chat a payload names; for a group, only once the actor is a member.

        DM participation is checked by the store, inside the same read or write.
        """
        return await self.chat(
            actor,
            conversation_id=chat.conversation_id,
            target_user_id=chat.target_user_id,
            group_id=chat.group_id,
        )

    async def chat(
        self,
        actor: Actor,
        *,
        conversation_id: str | None = None,
        target_user_id: str | None = None,
        group_id: str | None = None,
    ) -> Target:
        """`target` from loose fields (forward, broadcast, mute name chats their own way)."""
        target = domain.target_of(
            actor.user_id,
            conversation_id=conversation_id,
            target_user_id=target_user_id,
            group_id=group_id,
        )
        if isinstance(target, GroupTarget):
            domain.require_member(await self._groups.membership(actor, target.group_id))
        return target

    async def post(
        self,
        actor: Actor,
        target: Target,
        *,
        type: MessageType,
        media_url: str | None,
    ) -> Target:
        """The one check of everything that posts a new message (send, forward,
        broadcast): the actor may write to `target` (group membership here; DM
        participation inside the store's write). Blocks on DMs and media references
        plug in here, with `type` and `media_url`."""
        del type, media_url  # used by the checks that plug in here
        if isinstance(target, GroupTarget):
            domain.require_member(await self._groups.membership(actor, target.group_id))
        return target

    async def message(
        self,
        actor: Actor,
        message_id: str,
        *,
        conversation_id: str | None = None,
        group_id: str | None = None,
    ) -> MessageAccess:
        """A message the actor may read: NOT_FOUND when absent (or not in the chat the
        payload names), FORBIDDEN when the actor is not in its chat."""
        lookup = await self._store.lookup_for_read([message_id])
        if not lookup.messages:
            raise DomainError(ErrorCode.NOT_FOUND, "message not found", field="messageId")
        message = lookup.messages[0]
        hint = conversation_id or group_id
        if hint is not None and hint != message.chat_id:
            raise DomainError(ErrorCode.NOT_FOUND, "message not found", field="messageId")
        if domain.is_dm(message.chat_id):
            conversation = lookup.conversations.get(message.chat_id)
            domain.require_participant(conversation, actor.user_id, field="messageId")
            return MessageAccess(message=message, is_admin=False)
        membership = await self._groups.membership(actor, message.chat_id)
        domain.require_member(membership, field="messageId")
        return MessageAccess(message=message, is_admin=membership.role == "ADMIN")

    async def named(self, actor: Actor, payload: NamesMessage) -> MessageAccess:
        """`message` for a payload that names a message and maybe its chat."""
        return await self.message(
            actor,
            payload.message_id,
            conversation_id=payload.conversation_id,
            group_id=payload.group_id,
        )
