"""Gateway settings (`CHAT_*`), parsed once at start."""

from __future__ import annotations

import socket
from typing import Literal

from chat_contracts import limits, services
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
    ack_timeout_ms: int = limits.ACK_TIMEOUT_MS
    #: Presence lease of this gateway's users in Redis (ms); a dead gateway's entries
    #: expire after it, refreshed every third of it.
    presence_lease_ms: int = limits.PRESENCE_LEASE_MS
    presence_grace_ms: int = limits.PRESENCE_GRACE_MS
    typing_expiry_ms: int = limits.TYPING_EXPIRY_MS
    #: Per-user token buckets (PROTOCOL.md rate limits).
    rate_send_per_s: float = limits.RATE_SEND_PER_S
    rate_send_burst: int = limits.RATE_SEND_BURST
    rate_typing_per_s: float = limits.RATE_TYPING_PER_S
    rate_other_per_min: float = limits.RATE_OTHER_PER_MIN
    rate_group_create_per_min: float = limits.RATE_GROUP_CREATE_PER_MIN
    rate_sync_per_min: float = limits.RATE_SYNC_PER_MIN
    #: Engine.IO heartbeat (the client must answer a ping within the timeout).
    ping_interval_ms: int = limits.PING_INTERVAL_MS
    ping_timeout_ms: int = limits.PING_TIMEOUT_MS
    #: permessage-deflate (no context takeover) for WebSocket frames above this size.
    deflate: bool = True
    deflate_threshold: int = limits.DEFLATE_THRESHOLD
    #: Serve `/debug/gc` (a full collection, for the benchmark's memory readings).
    debug_endpoints: bool = False
    #: Tell a blocked user that they were blocked (PROTOCOL.md: on by default).
    notify_blocked: bool = True
    #: The optional services (`calls`, `media`) this deployment runs; the events of the
    #: others are answered NOT_IMPLEMENTED at once instead of `retry` forever.
    optional_services: list[str] = []

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.optional_services) - services.OPTIONAL)
        if unknown:
            raise ValueError(
                f"CHAT_OPTIONAL_SERVICES: {', '.join(unknown)} is not an optional service "
                f"(choose from {', '.join(sorted(services.OPTIONAL))})"
            )
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
