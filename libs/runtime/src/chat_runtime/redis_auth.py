"""Logging in to Redis: an ACL user and TLS, for redis-py and for raw connections.

`CHAT_REDIS_URL=rediss://host:6379/0` turns TLS on (verified against the system CAs, or
`CHAT_REDIS_TLS_CA`); `CHAT_REDIS_USERNAME` / `CHAT_REDIS_PASSWORD` (from a Secret) log
in as an ACL user, overriding any credentials in the URL.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TLS_SCHEME = "rediss"


@dataclass(frozen=True)
class RedisLogin:
    """Where and as whom to connect."""

    url: str
    username: str = ""
    password: str = ""
    tls_ca: str = ""

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS."""
        return urlsplit(self.url).scheme == TLS_SCHEME

    def redis_py(self) -> dict[str, Any]:
        """Keyword arguments for `redis.asyncio.Redis.from_url(self.url, ...)`."""
        kwargs: dict[str, Any] = {}
        if self.password:
            kwargs["password"] = self.password
            if self.username:
                kwargs["username"] = self.username
        if self.tls and self.tls_ca:
            kwargs["ssl_ca_certs"] = self.tls_ca
        return kwargs

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a raw connection, or None without TLS."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.tls_ca or None)

    def auth_words(self) -> list[bytes]:
        """The AUTH command's arguments (username, password), or none."""
        url = urlsplit(self.url)
        password = self.password or url.password or ""
        username = (self.username if self.password else url.username) or ""
        if not password:
            return []
        return [username.encode(), password.encode()] if username else [password.encode()]
