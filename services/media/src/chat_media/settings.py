"""Media settings (`CHAT_*`), parsed once at start."""

from __future__ import annotations

import hashlib
import hmac

from chat_runtime.auth import JwtSettings

MIB = 1024 * 1024


class MediaSettings(JwtSettings, kw_only=True, frozen=True):
    """Everything the media service reads (`CHAT_JWT_*` exactly as the gateway)."""

    media_host: str = "127.0.0.1"
    #: 0 picks a free port (tests); the bound port is logged in the ready line.
    media_port: int = 8081
    #: Base of the URLs handed to clients (`uploadUrl`, `mediaUrl`); default: the bound
    #: address. Behind a proxy: the public origin, e.g. https://media.example.
    media_public_url: str = ""
    #: Where the filesystem storage keeps files (`CHAT_MEDIA_STORAGE=fs`).
    media_dir: str = ".data/media"
    #: `fs` (local files) or `gridfs` (MongoDB GridFS; needs CHAT_MONGODB_URL).
    media_storage: str = "fs"
    #: Largest upload (PROTOCOL.md: 100 MiB).
    media_max_bytes: int = 100 * MIB
    #: Uploads one user may have open at once, and bytes one user may upload per UTC day.
    media_max_concurrent: int = 5
    media_daily_quota_bytes: int = 2_048 * MIB
    #: An upload with no byte received for this long expires; its bytes are removed and
    #: the uploader gets `upload:failed`.
    media_session_ttl_ms: int = 3_600_000
    #: How often the sweeper looks for expired sessions.
    media_sweep_interval_ms: int = 30_000
    #: `upload:progress` at most this often (PROTOCOL.md: 250 ms).
    media_progress_interval_ms: int = 250
    #: Signed download links (`?exp=&sig=`) live this long (issue: 1 h).
    media_link_ttl_s: int = 3_600
    #: HMAC key of signed links; default: derived from CHAT_JWT_SECRET (set it when the
    #: tokens are RS256/ES256, and the same on every media replica).
    media_signing_secret: str = ""
    #: Images above this many pixels are refused (Pillow's decompression-bomb guard).
    media_max_image_pixels: int = 50_000_000
    #: Longest side of a thumbnail (px).
    media_thumbnail_px: int = 320

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.media_storage not in ("fs", "gridfs"):
            raise ValueError("CHAT_MEDIA_STORAGE must be fs or gridfs")
        if self.media_storage == "gridfs" and not self.mongodb_url:
            raise ValueError("CHAT_MONGODB_URL is required when CHAT_MEDIA_STORAGE=gridfs")
        if not self.media_signing_secret and not self.jwt_secret:
            raise ValueError("CHAT_MEDIA_SIGNING_SECRET is required without CHAT_JWT_SECRET")
        if self.media_max_bytes <= 0 or self.media_max_concurrent <= 0:
            raise ValueError("CHAT_MEDIA_MAX_BYTES and CHAT_MEDIA_MAX_CONCURRENT must be positive")

    @property
    def signing_key(self) -> bytes:
        """The HMAC key of signed links (a key of its own, never the JWT secret itself)."""
        if self.media_signing_secret:
            return self.media_signing_secret.encode()
        return hmac.new(self.jwt_secret.encode(), b"chat-media-links", hashlib.sha256).digest()
