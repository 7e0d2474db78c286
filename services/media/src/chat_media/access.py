"""Who may read a media, where it was sent, and when it stops being served.

- `claim` (`cmd.media.claim`, asked by the messages service before it stores a message
  with a `mediaUrl`): the URL must be one this service issued, to the sender (a send) or
  readable by the forwarder (a forward); the chat is recorded as a `Place`.
- A reader is the uploader, or a member of a chat the media was sent to: a DM's two
  users, a group's members (asked of the groups service), a conversation named by id
  (asked of the messages service: `cmd.messages.mine`).
- `evt.messages.deleted`: the message's places go; media left with none is flagged
  deleted and its bytes removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import BadRequestError

from chat_contracts import DomainError, ErrorCode, subjects
from chat_contracts.bus import (
    Actor,
    ChatIds,
    Command,
    Empty,
    MediaClaim,
    MediaClaimed,
    Membership,
    MembershipQuery,
    MessageDeletedForEveryone,
)
from chat_media import domain
from chat_media.domain import Media, Place
from chat_media.storage import Storage
from chat_media.store import MediaStore
from chat_runtime.bus import Bus
from chat_runtime.worker import Router

log = logging.getLogger(__name__)

#: Deletions kept for a media worker that is down (s).
MEDIA_STREAM_MAX_AGE_S = 7 * 24 * 3_600.0
#: The durable consumer every media replica shares (each deletion handled once).
CLEANUP_CONSUMER = "media-cleanup"
#: Deadline of the membership look-ups a download makes (below a client's patience).
LOOKUP_TIMEOUT_MS = 2_000

_deleted = msgspec.msgpack.Decoder(MessageDeletedForEveryone)


class Access:
    """Reader checks, claims and deletions."""

    def __init__(
        self,
        *,
        store: MediaStore,
        storage: Storage,
        bus: Bus,
        media_url: Callable[[str], str],
        media_id_of: Callable[[str], str | None],
    ) -> None:
        self._store = store
        self._storage = storage
        self._bus = bus
        self._media_url = media_url
        self._media_id_of = media_id_of

    async def readable(self, user_id: str, media_id: str) -> Media:
        """The media if `user_id` may read it; NOT_FOUND otherwise (existence not told)."""
        media = await self._store.media(media_id)
        if media is None or media.deleted:
            raise DomainError(ErrorCode.NOT_FOUND, "no such media", field="mediaId")
        if media.owner_id == user_id:
            return media
        for place in await self._store.places(media_id):
            if await self._in_chat(user_id, place.chat):
                return media
        raise DomainError(ErrorCode.NOT_FOUND, "no such media", field="mediaId")

    async def _in_chat(self, user_id: str, chat: str) -> bool:
        kind, _, rest = chat.partition(":")
        actor = Actor(user_id=user_id, name=user_id)
        try:
            if kind == "p":
                return user_id in rest.split(":")
            if kind == "g":
                membership = await self._bus.query(
                    subjects.command(subjects.GROUPS, "membership"),
                    MembershipQuery(group_id=rest, user_id=user_id),
                    Membership,
                    actor=actor,
                    timeout_ms=LOOKUP_TIMEOUT_MS,
                )
                return membership.role is not None
            if kind == "c":
                mine = await self._bus.query(
                    subjects.command(subjects.MESSAGES, "mine"),
                    Empty(),
                    ChatIds,
                    actor=actor,
                    timeout_ms=LOOKUP_TIMEOUT_MS,
                )
                return rest in mine.chat_ids
        except DomainError:
            return False  # the look-up itself was refused (a group that is gone): no reader
        return False

    async def claim(self, cmd: Command[MediaClaim]) -> MediaClaimed:
        """`cmd.media.claim`: vet a message's `mediaUrl` and record where it goes."""
        actor, claim = cmd.actor, cmd.payload
        media_id = self._media_id_of(claim.media_url)
        media = None if media_id is None else await self._store.media(media_id)
        matches = media is not None and self._media_url(media.media_id) == claim.media_url
        media = domain.check_claim(media, matches, claim.message_type)
        if claim.forward:
            await self.readable(actor.user_id, media.media_id)
        elif media.owner_id != actor.user_id:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR,
                "mediaUrl was not issued by this service",
                field="mediaUrl",
            )
        chat = domain.chat_key(
            actor.user_id,
            group_id=claim.group_id,
            conversation_id=claim.conversation_id,
            peer_user_id=claim.peer_user_id,
        )
        await self._store.add_place(
            Place(
                media_id=media.media_id,
                message_id=claim.message_id,
                sender_id=actor.user_id,
                chat=chat,
                client_message_id=claim.client_message_id,
            )
        )
        return MediaClaimed(media_id=media.media_id, media_url=claim.media_url)

    async def message_deleted(self, event: MessageDeletedForEveryone) -> list[Media]:
        """Forget a deleted message's places; remove media no message refers to now."""
        gone = await self._store.remove_places(
            event.message_id, event.sender_id, event.client_message_id
        )
        for media in gone:
            await self._storage.delete(media.key)
            if media.thumb_key is not None:
                await self._storage.delete(media.thumb_key)
        return gone

    async def on_message_deleted(self, msg: Msg) -> None:
        """A JetStream delivery of `evt.messages.deleted`: acked once handled, redelivered
        (nak) when the clean-up failed, dropped (term) when unreadable."""
        try:
            event = _deleted.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("unreadable %s event", msg.subject)
            await msg.term()
            return
        try:
            gone = await self.message_deleted(event)
        except Exception:
            log.exception("media clean-up of message %s failed; redelivered", event.message_id)
            await msg.nak(delay=1.0)
            return
        await msg.ack()
        if gone:
            log.info("message %s deleted: %d media no longer served", event.message_id, len(gone))


async def ensure_media_stream(bus: Bus) -> None:
    """Create the `MEDIA` stream over `evt.messages.deleted` (idempotent).

    A deletion published while no media worker runs waits there (7 days at most), so
    media is never served on after a delete for everyone just because of a restart.
    """
    js = bus.nc.jetstream()
    config = api.StreamConfig(
        name=subjects.MEDIA_STREAM,
        subjects=[subjects.MESSAGE_DELETED],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        max_age=MEDIA_STREAM_MAX_AGE_S,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        log.info("stream %s exists; left as configured", subjects.MEDIA_STREAM)


def build_router(access: Access) -> Router:
    """The `cmd.media.*` command table (no client event: uploads are HTTP)."""
    router = Router(subjects.MEDIA)
    router.internal(subjects.MEDIA_CLAIM, MediaClaim, access.claim)
    return router
