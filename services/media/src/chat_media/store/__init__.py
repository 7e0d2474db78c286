"""Upload sessions, stored media and the places media was sent to: the repository Protocol.

Implementations: `sqlite.SqliteMediaStore` (embedded default) and `mongo.MongoMediaStore`;
`tests/test_store.py` is the contract both pass.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from chat_media.domain import Limits, Media, Place, State, UploadSession


class MediaStore(Protocol):
    """What the media service needs from its database."""

    async def open(self) -> None:
        """Connect and create the schema or indexes (idempotent)."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...

    async def open_session(
        self, session: UploadSession, limits: Limits, day_start: datetime
    ) -> None:
        """Store a new session unless the user's open sessions or today's bytes (since
        `day_start`) would exceed `limits` (`domain.check_new_upload` decides)."""
        ...

    async def session(self, upload_id: str) -> UploadSession | None:
        """One session."""
        ...

    async def progress(
        self, upload_id: str, received: int, expires_at: datetime, mime: str | None
    ) -> None:
        """Record bytes received and push the expiry back (an open session only)."""
        ...

    async def finish(self, upload_id: str, state: State, error: str) -> UploadSession | None:
        """Move an open session to FAILED or EXPIRED; the session, or None when it was
        no longer open (so that exactly one `upload:failed` goes out)."""
        ...

    async def complete(self, upload_id: str, media: Media) -> bool:
        """Store `media` and mark its open session COMPLETE; False if it was not open."""
        ...

    async def expired(self, now: datetime, limit: int) -> list[UploadSession]:
        """Open sessions whose expiry is at or before `now`, oldest first."""
        ...

    async def media(self, media_id: str) -> Media | None:
        """One stored media (deleted ones too, flagged)."""
        ...

    async def add_place(self, place: Place) -> None:
        """Record that a message carries the media (idempotent per message, and per
        sender and `clientMessageId`, so a retried send adds nothing)."""
        ...

    async def places(self, media_id: str) -> list[Place]:
        """Every message that carries the media."""
        ...

    async def remove_places(
        self, message_id: str, sender_id: str, client_message_id: str | None
    ) -> list[Media]:
        """Forget the message's places; media left with none are flagged deleted and
        returned (their bytes are the caller's to remove)."""
        ...
