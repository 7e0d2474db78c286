"""The transport policy: one object, built from the settings, that both client paths obey.

Two servers carry Socket.IO here: the lean WebSocket server (`lean.py`) and
python-engineio (long-polling and polling→WebSocket upgrades). Before this module each
read its own knobs, and they disagreed: an empty `CHAT_ALLOWED_ORIGINS` refused every
browser on one path and allowed every origin on the other (python-engineio reads `[]`
as "no check"), and the payload limit was 1,000,000 bytes on one and 1 MiB on the
other. `TransportPolicy` is the single source for origins, payload limits and the
heartbeat, plus the admission rules for connections that have not authenticated yet.

Everything here is in-memory and per gateway: the checks run before a client has proved
who it is, so they must cost no round trip.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any, Final

from chat_gateway.settings import GatewaySettings

#: A client whose unsent output exceeds this is too slow: cut it off (it will reconnect
#: and `sync`) rather than buffer without bound (bytes). Same rule on both paths.
MAX_WRITE_BUFFER: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TransportPolicy:
    """Limits and heartbeat shared by the lean WebSocket path and python-engineio."""

    #: Browser origins allowed; empty refuses every request that carries an `Origin`
    #: (browsers), on both paths. "*" allows any origin.
    allowed_origins: frozenset[str] = frozenset()
    #: Largest client message read and validated (bytes); announced as `maxPayload`.
    max_payload: int = 1 << 20
    #: Frames between `max_payload` and this get an error ack by id; above it, 1009.
    max_frame: int = 2 << 20
    ping_interval_ms: int = 25_000
    ping_timeout_ms: int = 20_000
    #: From TCP accept until the Socket.IO CONNECT completes (slowloris guard).
    connect_timeout_ms: int = 10_000
    #: Connections not yet authenticated: in total and per source address.
    max_pending: int = 4_096
    max_pending_per_address: int = 64
    #: Socket.IO handshakes (token checks) per source address: refill per second, burst.
    handshakes_per_s: float = 10.0
    handshake_burst: int = 50
    #: Events of one socket handled at a time before its reading pauses.
    max_in_flight: int = 32
    #: Refused events (malformed, unknown, invalid) a socket may send per minute, as a
    #: burst; past it the socket is closed.
    refused_per_min: float = 60.0
    max_write_buffer: int = MAX_WRITE_BUFFER
    deflate: bool = True
    deflate_threshold: int = 1_024
    #: Proxies whose `X-Forwarded-For` is believed (see `client_address`).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> TransportPolicy:
        """The policy the settings describe."""
        return cls(
            allowed_origins=frozenset(settings.allowed_origins),
            max_payload=settings.max_payload_bytes,
            max_frame=max(settings.max_frame_bytes, settings.max_payload_bytes),
            ping_interval_ms=settings.ping_interval_ms,
            ping_timeout_ms=settings.ping_timeout_ms,
            connect_timeout_ms=settings.connect_timeout_ms,
            max_pending=settings.max_pending_connections,
            max_pending_per_address=settings.max_pending_per_address,
            handshakes_per_s=settings.handshakes_per_address_per_s,
            handshake_burst=settings.handshake_burst,
            max_in_flight=settings.socket_max_in_flight,
            refused_per_min=settings.refused_events_per_min,
            deflate=settings.deflate,
            deflate_threshold=settings.deflate_threshold,
            trusted_proxies=tuple(
                ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies
            ),
        )

    def is_trusted_proxy(self, address: str) -> bool:
        """Whether `address` is one of the configured proxies."""
        if not self.trusted_proxies or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """The address per-address limits apply to.

        The TCP peer, unless it is a trusted proxy that sent `X-Forwarded-For`: then
        the rightmost address in that list that is not itself a trusted proxy (the
        ones left of it could be made up by the client).
        """
        if not forwarded_for or not self.is_trusted_proxy(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.is_trusted_proxy(hop):
                return hop
        return hops[0] if hops else peer

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request with this `Origin` header (None: no header) may connect.

        Requests without `Origin` are not browsers and are not subject to CORS; every
        browser sends one on a WebSocket upgrade and on cross-origin polling.
        """
        if origin is None:
            return True
        return origin in self.allowed_origins or "*" in self.allowed_origins

    def engineio_options(self) -> dict[str, Any]:
        """The same rules as keyword arguments for `socketio.AsyncServer`."""
        return {
            # A callable, never a list: python-engineio treats `[]` as "no check".
            "cors_allowed_origins": self.origin_allowed,
            "max_http_buffer_size": self.max_payload,
            "ping_interval": self.ping_interval_ms / 1000,
            "ping_timeout": self.ping_timeout_ms / 1000,
        }


@dataclass(slots=True)
class TokenBucket:
    """A local token bucket (no I/O): `take()` is False once the burst is spent."""

    per_s: float
    burst: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float | None = None) -> bool:
        """Spend one token if there is one."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_s)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait_ms(self) -> int:
        """Milliseconds until the next token (after a refused `take`)."""
        if self.per_s <= 0:
            return 0
        return max(1, int((1 - self.tokens) / self.per_s * 1000) + 1)

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (nothing to remember)."""
        return self.tokens + (now - self.stamp) * self.per_s >= self.burst


class HandshakeLimiter:
    """Socket.IO handshakes per source address, shared by both transport paths."""

    def __init__(self, per_s: float, burst: int) -> None:
        self._per_s = per_s
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, address: str, now: float | None = None) -> bool:
        """Take one handshake for `address`; False when it has used up its burst."""
        return self.wait_ms(address, now) == 0

    def wait_ms(self, address: str, now: float | None = None) -> int:
        """Take one handshake for `address`: 0, or the milliseconds until it may retry."""
        if self._per_s <= 0:
            return 0
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self._per_s, self._burst, stamp=now)
        return 0 if bucket.take(now) else bucket.wait_ms()

    def prune(self, now: float | None = None) -> None:
        """Forget addresses whose bucket is full again (bounded memory)."""
        now = time.monotonic() if now is None else now
        for address in [a for a, b in self._buckets.items() if b.full(now)]:
            del self._buckets[address]

    def __len__(self) -> int:
        return len(self._buckets)


class PendingConnections:
    """Connections accepted but not yet authenticated, in total and per source address."""

    def __init__(self, total: int, per_address: int) -> None:
        self._total_cap = total
        self._per_address_cap = per_address
        self.total = 0
        self._by_address: dict[str, int] = {}

    def admit(self, address: str, per_address: bool = True) -> bool:
        """Count one more; False (and not counted) when a cap is reached. A trusted
        proxy (`per_address=False`) carries many clients: only the total applies."""
        held = self._by_address.get(address, 0)
        if self.total >= self._total_cap or (per_address and held >= self._per_address_cap):
            return False
        self._by_address[address] = held + 1
        self.total += 1
        return True

    def release(self, address: str) -> None:
        """One of `address`'s connections authenticated, was handed over or closed."""
        held = self._by_address.get(address, 0)
        if held <= 0:
            return
        self.total -= 1
        if held == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = held - 1

    def of(self, address: str) -> int:
        """How many of `address`'s connections are pending."""
        return self._by_address.get(address, 0)
