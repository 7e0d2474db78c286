"""Gateway settings (`CHAT_*`), parsed once at start."""

from __future__ import annotations

import socket
from typing import Literal

from chat_runtime.settings import BaseSettings


class GatewaySettings(BaseSettings, kw_only=True, frozen=True):
    """Everything the gateway reads from the environment."""

    #: HS256 shared secret; or `jwt_public_key` (PEM text or a path to a PEM/JWKS file).
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    jwt_audience: str = ""
    jwt_issuer: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    gateway_host: str = "127.0.0.1"
    #: 0 picks a free port (tests); the bound port is logged in the ready line.
    gateway_port: int = 8080
    gateway_id: str = ""
    #: Browser origins allowed to connect; no wildcard unless "*" is listed explicitly.
    allowed_origins: list[str] = []
    #: How long a command may wait for its worker pool before the ack says retry (ms).
    ack_timeout_ms: int = 5_000
    #: Presence lease of this gateway's users in Redis (ms); a dead gateway's entries
    #: expire after it, refreshed every third of it.
    presence_lease_ms: int = 60_000
    presence_grace_ms: int = 10_000
    typing_expiry_ms: int = 10_000
    #: Per-user token buckets (PROTOCOL.md rate limits).
    rate_send_per_s: float = 5.0
    rate_send_burst: int = 10
    rate_typing_per_s: float = 5.0
    rate_other_per_min: float = 60.0
    #: Engine.IO heartbeat (the client must answer a ping within the timeout).
    ping_interval_ms: int = 25_000
    ping_timeout_ms: int = 20_000
    #: permessage-deflate (no context takeover) for WebSocket frames above this size.
    deflate: bool = True
    deflate_threshold: int = 1_024
    #: Serve `/debug/gc` (a full collection, for the benchmark's memory readings).
    debug_endpoints: bool = False
    #: Tell a blocked user that they were blocked (PROTOCOL.md: on by default).
    notify_blocked: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.jwt_secret and not self.jwt_public_key:
            raise ValueError("CHAT_JWT_SECRET or CHAT_JWT_PUBLIC_KEY is required")
        if self.jwt_public_key and self.jwt_algorithm == "HS256":
            raise ValueError("CHAT_JWT_ALGORITHM must be RS256 or ES256 with CHAT_JWT_PUBLIC_KEY")
        if self.jwt_secret and not self.jwt_public_key and self.jwt_algorithm != "HS256":
            raise ValueError("CHAT_JWT_ALGORITHM must be HS256 with CHAT_JWT_SECRET")

    @property
    def node_id(self) -> str:
        """This gateway's id in Redis keys (defaults to host name and port)."""
        return self.gateway_id or f"{socket.gethostname()}:{self.gateway_port}"
