"""JWT verification at the handshake: signature (pinned algorithm), exp, nbf, aud, iss.

The implementation is shared with the media service's HTTP API: `chat_runtime.auth`.
"""

from __future__ import annotations

from chat_runtime.auth import TOKEN_CACHE_SIZE, Session, TokenVerifier, Unauthorized

__all__ = ["TOKEN_CACHE_SIZE", "Session", "TokenVerifier", "Unauthorized"]
