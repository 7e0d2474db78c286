"""Logging in to Redis as an ACL user whose password comes from a Secret.

The URL (`CHAT_REDIS_URL`, in a ConfigMap) says where and how — `rediss://` for TLS,
`?ssl_ca_certs=<path>` for a private CA, as redis-py reads it — and carries no
password; `CHAT_REDIS_USERNAME` / `CHAT_REDIS_PASSWORD` (from a Secret, e.g. through
`CHAT_REDIS_PASSWORD_FILE`) are put into it here, so that redis-py and the gateway's
pipelined client log in from the same one URL.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit


def with_login(url: str, username: str = "", password: str = "") -> str:
    """`url` with the user and password in it (percent-encoded); unchanged without one."""
    if not password:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = quote(username, safe="")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
