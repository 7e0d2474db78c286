"""Pure rules of the media service: limits, names, ranges, progress, links, who may read.

No I/O and no clock: callers pass the time in. Refusals are `DomainError`s whose code
the HTTP layer maps to a status (`http.STATUS`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import unicodedata
from datetime import datetime
from urllib.parse import quote

import msgspec

from chat_contracts import DomainError, ErrorCode

#: Id prefixes (opaque to clients; made by the injected id generator).
UPLOAD_PREFIX = "up_"
MEDIA_PREFIX = "md_"
#: Longest display name kept (bytes of UTF-8; most filesystems and clients allow 255).
MAX_NAME_BYTES = 255


class State(enum.StrEnum):
    """Where an upload session stands."""

    OPEN = "open"
    COMPLETE = "complete"
    FAILED = "failed"
    EXPIRED = "expired"


class Kind(enum.StrEnum):
    """What a stored file is, by its content."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"


#: The allow-list: sniffed MIME type -> kind. Everything else (executables, scripts,
#: archives, fonts, unknown content) is refused. Images are only those Pillow re-encodes,
#: because every stored image has its metadata stripped.
ALLOWED: dict[str, Kind] = {
    "image/jpeg": Kind.IMAGE,
    "image/png": Kind.IMAGE,
    "image/gif": Kind.IMAGE,
    "image/webp": Kind.IMAGE,
    "video/mp4": Kind.VIDEO,
    "video/webm": Kind.VIDEO,
    "video/quicktime": Kind.VIDEO,
    "video/3gpp": Kind.VIDEO,
    "video/x-m4v": Kind.VIDEO,
    "video/x-matroska": Kind.VIDEO,
    "audio/mpeg": Kind.AUDIO,
    "audio/mp4": Kind.AUDIO,
    "audio/ogg": Kind.AUDIO,
    "audio/aac": Kind.AUDIO,
    "audio/x-flac": Kind.AUDIO,
    "audio/x-wav": Kind.AUDIO,
    "audio/amr": Kind.AUDIO,
    "application/pdf": Kind.DOCUMENT,
    "application/msword": Kind.DOCUMENT,
    "application/vnd.ms-excel": Kind.DOCUMENT,
    "application/vnd.ms-powerpoint": Kind.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": Kind.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": Kind.DOCUMENT,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": Kind.DOCUMENT,
    "application/vnd.oasis.opendocument.text": Kind.DOCUMENT,
    "application/vnd.oasis.opendocument.spreadsheet": Kind.DOCUMENT,
    "application/vnd.oasis.opendocument.presentation": Kind.DOCUMENT,
}

#: Which message `type` may carry which kind (FILE carries anything allowed).
MESSAGE_KINDS: dict[str, frozenset[Kind]] = {
    "IMAGE": frozenset({Kind.IMAGE}),
    "VIDEO": frozenset({Kind.VIDEO}),
    "AUDIO": frozenset({Kind.AUDIO}),
    "FILE": frozenset(Kind),
    "TEXT": frozenset(Kind),
}


class UploadSession(msgspec.Struct, kw_only=True):
    """One `POST /v1/uploads` and the bytes received for it so far."""

    upload_id: str
    user_id: str
    file_name: str
    size: int
    received: int = 0
    state: State = State.OPEN
    created_at: datetime
    expires_at: datetime
    mime: str | None = None
    media_id: str | None = None
    error: str | None = None


class Media(msgspec.Struct, kw_only=True):
    """A stored file: immutable once complete, gone once `deleted`."""

    media_id: str
    upload_id: str
    owner_id: str
    file_name: str
    mime: str
    kind: Kind
    size: int
    key: str
    created_at: datetime
    thumb_key: str | None = None
    width: int | None = None
    height: int | None = None
    deleted: bool = False


class Place(msgspec.Struct, kw_only=True, frozen=True):
    """A message that carries a media: its readers may download it."""

    media_id: str
    message_id: str
    sender_id: str
    #: `g:<groupId>`, `c:<conversationId>` or `p:<userA>:<userB>` (a DM by its users).
    chat: str
    client_message_id: str | None = None


class Limits(msgspec.Struct, kw_only=True, frozen=True):
    """Per-user upload limits (settings)."""

    max_bytes: int
    max_concurrent: int
    daily_quota_bytes: int


def check_new_upload(size: int, limits: Limits, *, open_count: int, used_today: int) -> None:
    """Refuse an upload over the size limit, the concurrent cap or the daily quota."""
    if size > limits.max_bytes:
        raise DomainError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"file is larger than the {limits.max_bytes} byte limit",
            field="size",
        )
    if open_count >= limits.max_concurrent:
        raise DomainError(
            ErrorCode.LIMIT_EXCEEDED,
            f"at most {limits.max_concurrent} uploads at once",
            field="size",
        )
    if used_today + size > limits.daily_quota_bytes:
        raise DomainError(ErrorCode.LIMIT_EXCEEDED, "daily upload quota exceeded", field="size")


_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*;]')
_SPACES = re.compile(r"\s+")


def sanitize_name(raw: str) -> str:
    """A display name safe for any client and header: no path, no control characters.

    Only the last path segment is kept (`../../etc/passwd` -> `passwd`), reserved and
    control characters become `_`, leading dots go (no hidden or `..` names), and the
    result is cut to 255 bytes keeping the extension. It is shown, never used as a path:
    files are stored under server-made ids.
    """
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cf", "Cs", "Co"))
    name = _SPACES.sub(" ", _UNSAFE.sub("_", name)).strip().lstrip(".").strip()
    if not name:
        return "file"
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and 0 < len(ext) <= 10 else ""
        keep = MAX_NAME_BYTES - len(ext.encode()) - (1 if ext else 0)
        stem = (stem if ext else name).encode()[:keep].decode(errors="ignore")
        name = f"{stem}.{ext}" if ext else stem
    return name


class ByteRange(msgspec.Struct, frozen=True):
    """The `Content-Range` of one PUT: bytes `start` to `end` (inclusive) of `total`."""

    start: int
    end: int | None
    total: int


_CONTENT_RANGE = re.compile(r"bytes (?:(\d{1,15})-(\d{1,15})|\*)/(\d{1,15})")


def parse_content_range(header: str | None, size: int) -> ByteRange:
    """The range a PUT carries; no header = the whole file from byte 0."""
    if header is None:
        return ByteRange(0, size - 1, size)
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            "Content-Range must be 'bytes <start>-<end>/<size>'",
            field="Content-Range",
        )
    total = int(match.group(3))
    if total != size:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"Content-Range total {total} differs from the declared size {size}",
            field="Content-Range",
        )
    if match.group(1) is None:
        return ByteRange(0, None, total)
    start, end = int(match.group(1)), int(match.group(2))
    if end < start or end >= total:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, "Content-Range is out of bounds", field="Content-Range"
        )
    return ByteRange(start, end, total)


def check_resume(session: UploadSession, byte_range: ByteRange) -> None:
    """A chunk must start where the stored bytes end (or at 0 to start over)."""
    if session.state is not State.OPEN:
        raise DomainError(ErrorCode.CONFLICT, f"upload is {session.state.value}")
    if byte_range.start not in (0, session.received):
        raise DomainError(
            ErrorCode.CONFLICT,
            f"upload has {session.received} bytes; resume at that offset",
            field="Content-Range",
        )


def check_offset(session: UploadSession, offset: int) -> None:
    """tus: a PATCH must start exactly where the stored bytes end."""
    if session.state is not State.OPEN:
        raise DomainError(ErrorCode.CONFLICT, f"upload is {session.state.value}")
    if offset != session.received:
        raise DomainError(
            ErrorCode.CONFLICT,
            f"upload has {session.received} bytes; Upload-Offset must be that",
            field="Upload-Offset",
        )


def sniff(head: bytes) -> tuple[str, Kind]:
    """The MIME type and kind of a file from its first bytes, or a refusal.

    The decision is the content's: neither the client's name nor its MIME type count.
    """
    import filetype  # a maintained magic-number table; imported here to keep start-up lean

    guess = filetype.guess(head)
    mime = guess.mime if guess is not None else None
    kind = ALLOWED.get(mime) if mime is not None else None
    if mime is None or kind is None:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"file type {mime or 'unknown'} is not allowed",
            field="file",
        )
    return mime, kind


class ProgressMeter:
    """When to emit `upload:progress`: at most every `interval_ms`, only when bytes moved.

    Where 5 % of a file takes longer than the interval, that is more often than every
    5 %; a faster stream reports once per interval (the "at most" rule wins).
    """

    def __init__(self, interval_ms: float, *, started_ms: float, received: int) -> None:
        self._interval = interval_ms
        self._last_ms = started_ms - interval_ms
        self._last_bytes = received

    def due(self, now_ms: float, received: int) -> bool:
        """True when an event for `received` bytes should go out now (then recorded)."""
        if received <= self._last_bytes or now_ms - self._last_ms < self._interval:
            return False
        self._last_ms = now_ms
        self._last_bytes = received
        return True


def percent(received: int, total: int) -> float:
    """Progress 0-100 with one decimal (never 100 before the last byte)."""
    if total <= 0 or received >= total:
        return 100.0
    return min(99.9, int(received * 1000 / total) / 10)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def sign_link(key: bytes, media_id: str, user_id: str, expires: int) -> str:
    """HMAC-SHA256 of one download link: the media, the reader it was made for, expiry."""
    message = f"{media_id}\n{user_id}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_link(key: bytes, media_id: str, user_id: str, expires: int, sig: str, now: int) -> bool:
    """A link is good until `expires` (unix s) if its signature matches (constant time)."""
    if now > expires or not _HEX64.fullmatch(sig):
        return False  # compare_digest takes ASCII only; a signature is 64 hex digits
    return hmac.compare_digest(sign_link(key, media_id, user_id, expires), sig)


def chat_key(
    sender_id: str,
    *,
    group_id: str | None,
    conversation_id: str | None,
    peer_user_id: str | None,
) -> str:
    """The `Place.chat` of a claim (exactly one of the three names the chat)."""
    named = [v for v in (group_id, conversation_id, peer_user_id) if v is not None]
    if len(named) != 1:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "exactly one chat must be named")
    if group_id is not None:
        return f"g:{group_id}"
    if conversation_id is not None:
        return f"c:{conversation_id}"
    a, b = sorted((sender_id, peer_user_id or ""))
    return f"p:{a}:{b}"


def check_claim(media: Media | None, url_matches: bool, message_type: str) -> Media:
    """The media a message may carry: one this service issued, alive, of a fitting kind."""
    if media is None or media.deleted or not url_matches:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, "mediaUrl was not issued by this service", field="mediaUrl"
        )
    if media.kind not in MESSAGE_KINDS.get(message_type, frozenset()):
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"a {message_type} message cannot carry {media.kind.value} media",
            field="mediaUrl",
        )
    return media


def content_disposition(kind: Kind, file_name: str) -> str:
    """RFC 6266: images, audio and video `inline`, documents `attachment`; the name as an
    ASCII fallback plus `filename*` in UTF-8."""
    mode = "attachment" if kind is Kind.DOCUMENT else "inline"
    fallback = file_name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"{mode}; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"
