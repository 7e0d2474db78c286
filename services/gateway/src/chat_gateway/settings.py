"""Gateway settings (`CHAT_*`), parsed once at start."""

from __future__ import annotations

import ipaddress
import socket
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import msgspec

from chat_contracts import limits, services
from chat_runtime.auth import MIN_SECRET_BYTES, PLACEHOLDER_SECRETS, check_jwt_config
from chat_runtime.settings import RedisSettings

__all__ = ["MIN_SECRET_BYTES", "PLACEHOLDER_SECRETS", "GatewaySettings"]


class GatewaySettings(RedisSettings, kw_only=True, frozen=True):
    """Everything the gateway reads from the environment."""

    uses_store: ClassVar[bool] = False

    #: HS256 shared secret; or `jwt_public_key` (PEM text or a path to a PEM/JWKS file).
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    jwt_audience: str = ""
    jwt_issuer: str = ""
    #: Clock skew tolerated between the token issuer and us (s), at the handshake and
    #: when a connected socket's token expires.
    jwt_leeway_s: int = 30
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
    #: This gateway's heartbeat in Redis (ms): the users service's sweep takes a gateway
    #: silent for `CHAT_HEARTBEAT_TTL_MS` (default 3 beats) for dead and sends its users
    #: offline.
    heartbeat_ms: int = 5_000
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
    #: The optional services (`calls`, `media`) this deployment runs; the events of the
    #: others are answered NOT_IMPLEMENTED at once instead of `retry` forever.
    optional_services: list[str] = []
    #: Development stack only (`./taskw up` sets it): tokens without `aud`/`iss` checks
    #: are accepted. Outside dev mode both must be configured.
    dev_mode: bool = False
    #: Largest client message (bytes), on both transports; announced as `maxPayload`.
    max_payload_bytes: int = 1 << 20
    #: Hard transport limit (bytes): a WebSocket message above `max_payload_bytes` but
    #: within this is answered with an error ack; above it the socket is closed (1009).
    max_frame_bytes: int = 2 << 20
    #: From TCP accept until the Socket.IO CONNECT completes (ms), else the socket is cut.
    connect_timeout_ms: int = 10_000
    #: Connections that have not authenticated yet: in total, and per source address.
    max_pending_connections: int = 4_096
    max_pending_per_address: int = 64
    #: Proxies (IPs or CIDRs, e.g. the ingress controller's pods) whose
    #: `X-Forwarded-For` names the client: per-address limits then apply to the client,
    #: and the proxy itself is exempt from the per-address pending cap.
    trusted_proxies: list[str] = []
    #: Socket.IO handshakes per source address and second (0 = no limit), and the burst.
    handshakes_per_address_per_s: float = 10.0
    handshake_burst: int = 50
    #: Sockets one user may hold on this gateway; past it the handshake gets
    #: `connect_error` with `data.code` `LIMIT_EXCEEDED`.
    max_sockets_per_user: int = 50
    #: Refused events (malformed, unknown, invalid) a socket may send per minute (also
    #: the burst); a socket past it is disconnected.
    refused_events_per_min: float = 60.0
    #: Client commands wait this long (ms) from the first for others of their domain and
    #: go to the workers as one request (`CommandBatcher`): less CPU per message, that
    #: much more latency; 0 sends each loop turn's commands at its end.
    command_batch_window_ms: float = 0.0
    #: Events of one socket handled at once (in arrival order); past it reading pauses.
    socket_max_in_flight: int = 32
    #: Every Redis reply must arrive within this (ms), else the ack says retry.
    redis_timeout_ms: int = 2_000
    #: On SIGTERM the sockets are closed in jittered batches over at most this window
    #: (ms; 5 ms per socket below it, see drain.py), so their reconnects do not reach
    #: the other gateways as one herd. Keep it well inside the orchestrator's grace
    #: period (Kubernetes: 30 s by default).
    drain_window_ms: int = 10_000
    #: Serve the web client (`clients/web/dist`, or `web_client_dir`) at `/`: the dev
    #: stack only. `dev_mode` adds `POST /dev/token` (a token for any user name).
    web_client: bool = False
    web_client_dir: str = ""
    #: The media service the web client's `/v1/...` requests are forwarded to.
    web_media_url: str = ""
    #: `websocket,polling`, or `websocket` alone: long-polling needs every request of a
    #: session on this process (session affinity at the edge), which a WebSocket-only
    #: production avoids; polling requests then get a 400 that names this setting.
    transports: list[Literal["websocket", "polling"]] = msgspec.field(
        default_factory=lambda: ["websocket", "polling"]
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.optional_services) - services.OPTIONAL)
        if unknown:
            raise ValueError(
                f"CHAT_OPTIONAL_SERVICES: {', '.join(unknown)} is not an optional service "
                f"(choose from {', '.join(sorted(services.OPTIONAL))})"
            )
        # The same checks as every service that takes tokens (chat_runtime.auth).
        check_jwt_config(self)
        if self.max_frame_bytes < self.max_payload_bytes:
            raise ValueError("CHAT_MAX_FRAME_BYTES must be at least CHAT_MAX_PAYLOAD_BYTES")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"CHAT_TRUSTED_PROXIES: {proxy!r} is not an IP or CIDR") from None
        scheme = urlsplit(self.redis_url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"CHAT_REDIS_URL: unsupported scheme {scheme!r}")
        if "websocket" not in self.transports:
            raise ValueError("CHAT_TRANSPORTS must include websocket (websocket[,polling])")

    @property
    def node_id(self) -> str:
        """This gateway's id in Redis keys (defaults to host name and port)."""
        return self.gateway_id or f"{socket.gethostname()}:{self.gateway_port}"
