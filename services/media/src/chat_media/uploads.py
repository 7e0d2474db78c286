"""Upload sessions: create, receive a (resumable) byte stream, finish, expire.

Decode → check (domain) → store → publish, like every handler: `upload:progress`,
`upload:complete` and `upload:failed` go to `rt.user.<uploader>` (every socket of the
uploader on every gateway) only after what they announce is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import msgspec

from chat_contracts import DomainError, ErrorCode
from chat_contracts.bus import Actor
from chat_contracts.server import UploadComplete, UploadFailed, UploadProgress
from chat_media import domain
from chat_media.domain import Kind, Limits, Media, State, UploadSession
from chat_media.images import ImageWorker
from chat_media.settings import MediaSettings
from chat_media.storage import Storage, StorageError
from chat_media.store import MediaStore
from chat_runtime.bus import Publisher
from chat_runtime.clock import Clock, IdGenerator, monotonic_ms

log = logging.getLogger(__name__)

UPLOAD_PROGRESS = "upload:progress"
UPLOAD_COMPLETE = "upload:complete"
UPLOAD_FAILED = "upload:failed"
#: Bytes the type is sniffed from (filetype reads at most this many).
SNIFF_BYTES = 8_192
#: Expired sessions handled per sweeper pass (the next pass takes the rest).
SWEEP_BATCH = 100


def upload_key(upload_id: str) -> str:
    """Storage key of an upload's bytes as received."""
    return f"u/{upload_id}"


def media_key(media_id: str) -> str:
    """Storage key of a re-encoded image."""
    return f"m/{media_id}"


def thumb_key(media_id: str) -> str:
    """Storage key of a thumbnail."""
    return f"t/{media_id}"


class Received(msgspec.Struct, kw_only=True):
    """What a PUT achieved: the session now, and the media when the upload completed."""

    session: UploadSession
    media: Media | None = None


class Uploads:
    """The upload side of the media service."""

    def __init__(
        self,
        *,
        settings: MediaSettings,
        store: MediaStore,
        storage: Storage,
        publisher: Publisher,
        images: ImageWorker,
        clock: Clock,
        ids: IdGenerator,
        media_url: Callable[[str], str],
    ) -> None:
        self._settings = settings
        self._store = store
        self._storage = storage
        self._publisher = publisher
        self._images = images
        self._clock = clock
        self._ids = ids
        self._media_url = media_url
        self._limits = Limits(
            max_bytes=settings.media_max_bytes,
            max_concurrent=settings.media_max_concurrent,
            daily_quota_bytes=settings.media_daily_quota_bytes,
        )
        self._ttl = timedelta(milliseconds=settings.media_session_ttl_ms)
        #: Sessions receiving bytes in this process: a second PUT on one is a CONFLICT.
        self._busy: set[str] = set()

    # --- create -----------------------------------------------------------------------

    async def create(self, actor: Actor, file_name: str, size: int) -> UploadSession:
        """`POST /v1/uploads`: a new session, refused over the limits before any byte."""
        if size <= 0:
            raise DomainError(ErrorCode.VALIDATION_ERROR, "size must be positive", field="size")
        domain.check_new_upload(size, self._limits, open_count=0, used_today=0)
        now = self._clock.now()
        session = UploadSession(
            upload_id=self._ids.new(domain.UPLOAD_PREFIX),
            user_id=actor.user_id,
            file_name=domain.sanitize_name(file_name),
            size=size,
            created_at=now,
            expires_at=now + self._ttl,
        )
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        await self._store.open_session(session, self._limits, day_start)
        return session

    async def owned(self, actor: Actor, upload_id: str) -> UploadSession:
        """The actor's session (someone else's is NOT_FOUND: ids are not confirmed)."""
        session = await self._store.session(upload_id)
        if session is None or session.user_id != actor.user_id:
            raise DomainError(ErrorCode.NOT_FOUND, "no such upload", field="uploadId")
        return session

    async def stored_bytes(self, session: UploadSession) -> int:
        """What `HEAD` reports: the bytes in storage for an open session."""
        if session.state is State.COMPLETE:
            return session.size
        if session.state is not State.OPEN:
            return 0
        return await self._storage.size(upload_key(session.upload_id))

    # --- receive ----------------------------------------------------------------------

    async def receive(
        self,
        actor: Actor,
        upload_id: str,
        content_range: str | None,
        content_length: int | None,
        body: AsyncIterator[bytes],
        *,
        offset: int | None = None,
    ) -> Received:
        """`PUT uploadUrl`: append the body at its `Content-Range` offset, streaming
        (tus `PATCH`: at `offset`, which must be exactly the stored size).

        Refused before reading when `Content-Length` runs past the declared size; cut
        off (and the session failed) when the stream does. The type is sniffed from the
        first bytes before any of them is stored.
        """
        session = await self.owned(actor, upload_id)
        if session.state is State.OPEN:
            # What storage holds is the truth (a crash may have lost the last tick).
            session.received = await self.stored_bytes(session)
        if offset is None:
            byte_range = domain.parse_content_range(content_range, session.size)
            domain.check_resume(session, byte_range)
        else:
            byte_range = domain.ByteRange(offset, None, session.size)
            domain.check_offset(session, offset)
        if content_length is not None:
            if byte_range.start + content_length > session.size:
                await self.fail(session, State.FAILED, "file is larger than its declared size")
                raise DomainError(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    "Content-Length runs past the declared size",
                    field="Content-Length",
                )
            if (
                byte_range.end is not None
                and content_length != byte_range.end - byte_range.start + 1
            ):
                raise DomainError(
                    ErrorCode.VALIDATION_ERROR,
                    "Content-Length does not match Content-Range",
                    field="Content-Length",
                )
        if upload_id in self._busy:
            raise DomainError(ErrorCode.CONFLICT, "this upload is already receiving bytes")
        self._busy.add(upload_id)
        try:
            received = await self._stream(session, byte_range.start, body)
            session.received = received
            if received < session.size:
                return Received(session=session)
            media = await self._finish(session)
            return Received(session=session, media=media)
        finally:
            self._busy.discard(upload_id)

    async def _stream(self, session: UploadSession, start: int, body: AsyncIterator[bytes]) -> int:
        key = upload_key(session.upload_id)
        mime = session.mime
        head = b""
        if mime is None and start > 0:
            # A resume before the type was known: sniff from what is stored plus the new bytes.
            async for data in self._storage.read(key, 0, min(start, SNIFF_BYTES)):
                head += data
        try:
            writer = await self._storage.writer(key, start)
        except StorageError as exc:
            raise DomainError(ErrorCode.CONFLICT, str(exc), field="Content-Range") from None
        received = start
        pending: list[bytes] = []  # held back until the type is known (at most ~8 KiB + 1 chunk)
        meter = domain.ProgressMeter(
            self._settings.media_progress_interval_ms, started_ms=monotonic_ms(), received=start
        )
        try:
            async for data in body:
                if received + len(data) > session.size:
                    raise _Overflow
                received += len(data)
                if mime is None:
                    head += data
                    pending.append(data)
                    if len(head) < SNIFF_BYTES and received < session.size:
                        continue
                    mime = domain.sniff(head)[0]
                    for held in pending:
                        await writer.write(held)
                    pending.clear()
                else:
                    await writer.write(data)
                if meter.due(monotonic_ms(), received):
                    await self._progress(session, received, mime)
            if mime is None and head:
                mime = domain.sniff(head)[0]
                for held in pending:
                    await writer.write(held)
                pending.clear()
        except _Overflow:
            await writer.close()
            await self.fail(session, State.FAILED, "file is larger than its declared size")
            raise DomainError(
                ErrorCode.PAYLOAD_TOO_LARGE, "body runs past the declared size", field="size"
            ) from None
        except DomainError as exc:
            # A refused type: nothing of it was stored. The writer is closed before the
            # bytes are removed (a GridFS part is only written at close).
            await writer.close()
            await self.fail(session, State.FAILED, exc.message)
            raise
        except ConnectionError as exc:
            # The client went away mid-stream: keep what arrived (HEAD tells it, a PUT
            # with Content-Range resumes it); the sweeper expires it if nobody does.
            log.info("upload %s cut at %d bytes: %s", session.upload_id, received, exc)
        except BaseException:
            await writer.close()
            raise
        await writer.close()
        stored = received - sum(len(p) for p in pending)
        if stored < session.size:
            await self._store.progress(session.upload_id, stored, self._expiry(), mime)
        session.mime = mime
        return stored

    async def _progress(self, session: UploadSession, received: int, mime: str | None) -> None:
        await self._store.progress(session.upload_id, received, self._expiry(), mime)
        await self._publisher.to_user(
            session.user_id,
            UPLOAD_PROGRESS,
            UploadProgress(
                upload_id=session.upload_id,
                file_name=session.file_name,
                progress=domain.percent(received, session.size),
                bytes_uploaded=received,
                total_bytes=session.size,
            ),
        )

    def _expiry(self) -> datetime:
        return self._clock.now() + self._ttl

    async def _finish(self, session: UploadSession) -> Media:
        """All bytes are in: images re-encoded (off the loop), the media stored, announced."""
        mime = session.mime
        if mime is None:
            raise DomainError(ErrorCode.INTERNAL, "upload finished without a type")
        kind = domain.ALLOWED[mime]
        media_id = self._ids.new(domain.MEDIA_PREFIX)
        key = upload_key(session.upload_id)
        media = Media(
            media_id=media_id,
            upload_id=session.upload_id,
            owner_id=session.user_id,
            file_name=session.file_name,
            mime=mime,
            kind=kind,
            size=session.size,
            key=key,
            created_at=self._clock.now(),
        )
        if kind is Kind.IMAGE:
            media = await self._process_image(session, media)
        if not await self._store.complete(session.upload_id, media):
            raise DomainError(ErrorCode.CONFLICT, "upload is no longer open")
        session.state = State.COMPLETE
        session.media_id = media.media_id
        await self._publisher.to_user(
            session.user_id,
            UPLOAD_COMPLETE,
            UploadComplete(
                upload_id=session.upload_id,
                file_name=session.file_name,
                media_url=self._media_url(media.media_id),
                file_size=media.size,
            ),
        )
        return media

    async def _process_image(self, session: UploadSession, media: Media) -> Media:
        # Images are read whole for Pillow; the pixel guard bounds what decoding costs.
        data = b"".join([chunk async for chunk in self._storage.read(media.key)])
        try:
            processed = await self._images.process(data, media.mime)
        except DomainError as exc:
            await self.fail(session, State.FAILED, exc.message)
            raise
        new_key, new_thumb = media_key(media.media_id), thumb_key(media.media_id)
        await self._storage.put(new_key, processed.data)
        await self._storage.put(new_thumb, processed.thumbnail)
        await self._storage.delete(media.key)
        return msgspec.structs.replace(
            media,
            key=new_key,
            thumb_key=new_thumb,
            size=len(processed.data),
            width=processed.width,
            height=processed.height,
        )

    # --- fail and expire ----------------------------------------------------------------

    async def fail(self, session: UploadSession, state: State, error: str) -> None:
        """End an open session: its bytes removed, one `upload:failed` to the uploader."""
        ended = await self._store.finish(session.upload_id, state, error)
        session.state = state
        session.error = error
        await self._storage.delete(upload_key(session.upload_id))
        if ended is None:
            return  # someone else ended it and told the uploader
        await self._publisher.to_user(
            ended.user_id,
            UPLOAD_FAILED,
            UploadFailed(upload_id=ended.upload_id, file_name=ended.file_name, error=error),
        )

    async def sweep(self) -> int:
        """Expire every open session past its expiry (bytes removed, uploader told)."""
        count = 0
        while True:
            batch = await self._store.expired(self._clock.now(), SWEEP_BATCH)
            done = 0
            for session in batch:
                if session.upload_id in self._busy:
                    continue  # receiving right now: its expiry moves with each tick
                await self.fail(session, State.EXPIRED, "upload expired")
                done += 1
            count += done
            if len(batch) < SWEEP_BATCH or done == 0:
                return count

    async def run_sweeper(self) -> None:
        """`sweep` every `media_sweep_interval_ms`, forever (cancelled at shutdown)."""
        interval = self._settings.media_sweep_interval_ms / 1000
        while True:
            try:
                swept = await self.sweep()
                if swept:
                    log.info("expired %d upload sessions", swept)
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(interval)


class _Overflow(Exception):
    """The body ran past the declared size."""
