"""The one place the messages service vets a `mediaUrl`: `cmd.media.claim`.

A message (or forward) that carries a `mediaUrl` is stored only if the media service
issued that URL to the sender (or, for a forward, the forwarder may read it); the media
service records the chat as a place the media was sent to, so the chat's members may
download it. A message without `mediaUrl` (every TEXT message) pays nothing: no request,
no allocation. With one, the cost is one NATS round trip to the media service, which
reads the media and records the place in SQLite: p50 0.40 ms, p99 1.0 ms on the 2-core
machine (tests/integration/test_media.py, the claim test, 300 claims).
"""

from __future__ import annotations

from chat_contracts import DomainError, ErrorCode, subjects
from chat_contracts.bus import Actor, MediaClaim, MediaClaimed
from chat_contracts.client import MessageType
from chat_messages.domain import ConversationTarget, GroupTarget, PeerTarget, Target
from chat_runtime.bus import Bus

#: Below the gateway's 5 s deadline for the whole command (as for groups look-ups).
DEFAULT_MEDIA_TIMEOUT_MS = 2_000


class MediaGate:
    """Vets the `mediaUrl` of a message about to be stored, over `cmd.media.claim`.

    Without a bus (a deployment without the media service) no `mediaUrl` is valid.
    """

    def __init__(self, bus: Bus | None, *, timeout_ms: int = DEFAULT_MEDIA_TIMEOUT_MS) -> None:
        self._bus = bus
        self._timeout_ms = timeout_ms

    async def admit(
        self,
        actor: Actor,
        target: Target,
        *,
        media_url: str | None,
        message_type: MessageType,
        message_id: str,
        client_message_id: str | None,
        forward: bool = False,
    ) -> None:
        """Return when the message may carry `media_url`; raise `DomainError`
        (VALIDATION_ERROR, field `mediaUrl`) or `RetryableError` otherwise."""
        if media_url is None:
            return
        if self._bus is None:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR,
                "mediaUrl was not issued by this service",
                field="mediaUrl",
            )
        claim = MediaClaim(
            media_url=media_url,
            message_type=message_type,
            message_id=message_id,
            client_message_id=client_message_id,
            forward=forward,
        )
        if isinstance(target, GroupTarget):
            claim.group_id = target.group_id
        elif isinstance(target, ConversationTarget):
            claim.conversation_id = target.conversation_id
        elif isinstance(target, PeerTarget):
            claim.peer_user_id = target.user_b if target.user_a == actor.user_id else target.user_a
        await self._bus.query(
            subjects.command(subjects.MEDIA, subjects.MEDIA_CLAIM),
            claim,
            MediaClaimed,
            actor=actor,
            timeout_ms=self._timeout_ms,
        )
