"""ICE servers handed to each party: STUN, and TURN with REST API credentials.

coturn's `use-auth-secret` (the "TURN REST API" of draft-uberti-behave-turn-rest)
checks: username = `<expiry unix time>:<user id>`, password = base64(HMAC-SHA1(secret,
username)). HMAC comes from the standard library (`hmac`, `hashlib`), the maintained
implementation; nothing here is home-made crypto.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Final

from chat_contracts.server import IceServer

#: PROTOCOL.md: TURN credentials are valid for 1 h.
CREDENTIAL_TTL_S: Final = 3_600


def credentials(secret: str, user_id: str, now_s: int, ttl_s: int) -> tuple[str, str]:
    """(username, password) valid until `now_s + ttl_s`."""
    username = f"{now_s + ttl_s}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass(frozen=True)
class IceConfig:
    """The configured servers (settings `CHAT_STUN_URLS`, `CHAT_TURN_URLS`, ...)."""

    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str = ""
    ttl_s: int = CREDENTIAL_TTL_S

    def servers(self, user_id: str, now_s: int) -> list[IceServer]:
        """`iceServers` for `user_id`: STUN as is, TURN with fresh credentials."""
        out: list[IceServer] = []
        if self.stun_urls:
            out.append(IceServer(urls=list(self.stun_urls)))
        if self.turn_urls and self.turn_secret:
            username, password = credentials(self.turn_secret, user_id, now_s, self.ttl_s)
            out.append(IceServer(urls=list(self.turn_urls), username=username, credential=password))
        return out
