"""`CHAT_*` settings of the calls worker."""

from __future__ import annotations

from chat_calls import domain
from chat_calls.turn import CREDENTIAL_TTL_S, IceConfig
from chat_runtime.settings import RedisSettings

#: How often some replica sweeps deadlines and presence (ms): timeouts fire at most
#: this late.
SWEEP_INTERVAL_MS = 500


class CallsSettings(RedisSettings, kw_only=True, frozen=True):
    """Redis (call state; `RedisSettings`), ICE servers, and the call time rules."""

    #: STUN URLs handed out as they are (`stun:stun.example.org:3478`).
    stun_urls: list[str] = []
    #: TURN URLs (`turn:turn.example.org:3478?transport=udp`, `turns:...:5349`) and the
    #: shared secret of coturn's `use-auth-secret` / `static-auth-secret`.
    turn_urls: list[str] = []
    turn_secret: str = ""
    turn_ttl_s: int = CREDENTIAL_TTL_S
    call_ring_timeout_ms: int = domain.RING_TIMEOUT_MS
    call_disconnect_ms: int = domain.DISCONNECT_MS
    call_max_duration_ms: int = domain.MAX_DURATION_MS
    call_sweep_interval_ms: int = SWEEP_INTERVAL_MS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.turn_urls and not self.turn_secret:
            raise ValueError("CHAT_TURN_SECRET is required with CHAT_TURN_URLS")
        if min(self.call_ring_timeout_ms, self.call_disconnect_ms, self.call_max_duration_ms) <= 0:
            raise ValueError("CHAT_CALL_*_MS must be positive")
        if self.call_sweep_interval_ms <= 0 or self.turn_ttl_s <= 0:
            raise ValueError("CHAT_CALL_SWEEP_INTERVAL_MS and CHAT_TURN_TTL_S must be positive")

    @property
    def timing(self) -> domain.Timing:
        """The time rules."""
        return domain.Timing(
            ring_ms=self.call_ring_timeout_ms,
            disconnect_ms=self.call_disconnect_ms,
            max_ms=self.call_max_duration_ms,
        )

    @property
    def ice(self) -> IceConfig:
        """The ICE servers."""
        return IceConfig(
            stun_urls=self.stun_urls,
            turn_urls=self.turn_urls,
            turn_secret=self.turn_secret,
            ttl_s=self.turn_ttl_s,
        )
