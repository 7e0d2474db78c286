"""Bearer-JWT verification shared by every edge that takes tokens (gateway, media).

Signature with a pinned algorithm, `exp`, `nbf`, `aud`, `iss`; the settings that
configure it (`CHAT_JWT_*`, `CHAT_DEV_MODE`) are checked at start by
`check_jwt_config`, so that one token is accepted (or refused) the same way everywhere.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import jwt

from chat_contracts.bus import Actor
from chat_contracts.ids import is_valid_id
from chat_runtime.settings import BaseSettings

#: HS256 needs at least 256 bits of key (RFC 7518 section 3.2).
MIN_SECRET_BYTES: Final = 32
#: Values that are examples, not secrets: deploy/k8s/secret.yaml ships the first one.
PLACEHOLDER_SECRETS: Final = ("replace-me", "changeme", "change-me", "your-secret", "example")


class JwtConfig(Protocol):
    """The settings token verification reads (`CHAT_JWT_*`, `CHAT_DEV_MODE`).

    `JwtSettings` has them; the gateway's settings declare the same fields beside its
    Redis ones (msgspec settings cannot inherit from two Structs with fields).
    """

    @property
    def jwt_secret(self) -> str: ...
    @property
    def jwt_public_key(self) -> str: ...
    @property
    def jwt_algorithm(self) -> str: ...
    @property
    def jwt_audience(self) -> str: ...
    @property
    def jwt_issuer(self) -> str: ...
    @property
    def jwt_leeway_s(self) -> int: ...
    @property
    def dev_mode(self) -> bool: ...


def check_jwt_config(config: JwtConfig) -> None:
    """The start-up checks of the JWT settings; ValueError naming the variable."""
    if config.jwt_secret and config.jwt_public_key:
        raise ValueError(
            "CHAT_JWT_SECRET and CHAT_JWT_PUBLIC_KEY are both set: configure one "
            "(HS256 with CHAT_JWT_SECRET, or RS256/ES256 with CHAT_JWT_PUBLIC_KEY)"
        )
    if not config.jwt_secret and not config.jwt_public_key:
        raise ValueError("CHAT_JWT_SECRET or CHAT_JWT_PUBLIC_KEY is required")
    if config.jwt_public_key and config.jwt_algorithm == "HS256":
        raise ValueError("CHAT_JWT_ALGORITHM must be RS256 or ES256 with CHAT_JWT_PUBLIC_KEY")
    if config.dev_mode and not config.jwt_secret:
        raise ValueError("CHAT_DEV_MODE needs CHAT_JWT_SECRET (it signs development tokens)")
    if config.jwt_secret and config.jwt_algorithm != "HS256":
        raise ValueError("CHAT_JWT_ALGORITHM must be HS256 with CHAT_JWT_SECRET")
    if config.jwt_secret:
        check_secret(config.jwt_secret)
    if not config.dev_mode and not (config.jwt_audience and config.jwt_issuer):
        raise ValueError(
            "CHAT_JWT_AUDIENCE and CHAT_JWT_ISSUER are required "
            "(only CHAT_DEV_MODE=true accepts tokens without them)"
        )


class JwtSettings(BaseSettings, kw_only=True, frozen=True):
    """The shared settings plus how bearer tokens are verified (a `JwtConfig`)."""

    #: HS256 shared secret; or `jwt_public_key` (PEM text or a path to a PEM/JWKS file).
    jwt_secret: str = ""
    jwt_public_key: str = ""
    jwt_algorithm: Literal["HS256", "RS256", "ES256"] = "HS256"
    jwt_audience: str = ""
    jwt_issuer: str = ""
    #: Clock skew tolerated between the token issuer and us (s).
    jwt_leeway_s: int = 30
    #: Development stack only (`./taskw up` sets it): tokens without `aud`/`iss` checks
    #: are accepted. Outside dev mode both must be configured.
    dev_mode: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_jwt_config(self)


def check_secret(secret: str) -> None:
    """Refuse an HS256 secret that is too short or an example value."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"CHAT_JWT_SECRET is too short: HS256 needs at least {MIN_SECRET_BYTES} bytes"
        )
    lowered = secret.lower()
    if any(marker in lowered for marker in PLACEHOLDER_SECRETS):
        raise ValueError("CHAT_JWT_SECRET is a placeholder: set a random secret")


#: Verified tokens remembered (oldest dropped first): ~0.25 KB each, ~1 MB in all. A
#: client reconnecting to the same gateway with the same token (a network blip, a page
#: reload, another tab) skips the signature check: HS256 verification with PyJWT costs
#: ~190 µs of CPU here, a look-up ~6 µs (a BLAKE2b digest of the token).
TOKEN_CACHE_SIZE = 4096


class Unauthorized(Exception):
    """The token is missing, expired, forged or lacks a claim we need."""


def _load_key(settings: JwtConfig) -> Any:
    if settings.jwt_secret:
        return settings.jwt_secret
    text = settings.jwt_public_key
    if not text.lstrip().startswith(("-----BEGIN", "{")):
        text = Path(text).read_text()
    if text.lstrip().startswith("{"):
        # A JWKS file: take the first key that fits the pinned algorithm.
        jwks = jwt.PyJWKSet.from_dict(json.loads(text))
        for key in jwks.keys:
            if key.algorithm_name in (settings.jwt_algorithm, None):
                return key.key
        raise ValueError("no key for the configured algorithm in the JWKS file")
    return text


@dataclass(frozen=True, slots=True)
class Session:
    """A verified token: who it names and until when it is good (epoch seconds)."""

    actor: Actor
    #: `exp` plus the tolerated skew: the moment the socket must re-authenticate.
    expires_at: float


class TokenVerifier:
    """Turns a bearer token into the `Actor` it names, or raises `Unauthorized`."""

    def __init__(
        self,
        settings: JwtConfig,
        *,
        now: Callable[[], float] = time.time,
        cache_size: int = TOKEN_CACHE_SIZE,
    ) -> None:
        self._key = _load_key(settings)
        self._now = now
        self._cache_size = cache_size
        #: digest of a verified token -> its session (valid until `expires_at`).
        self._verified: dict[bytes, Session] = {}
        # One algorithm, from config: never from the token header (alg confusion).
        self._algorithms = [settings.jwt_algorithm]
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None
        self._leeway = settings.jwt_leeway_s

    def verify(self, token: object) -> Actor:
        """Check the token and return who it names."""
        return self.session(token).actor

    def session(self, token: object) -> Session:
        """Check the token; who it names and when it stops being valid (a token verified
        before and not expired since is answered from the cache: same token, same answer)."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("missing token")
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()
        known = self._verified.get(digest)
        if known is not None:
            if self._now() < known.expires_at:
                return known
            del self._verified[digest]
        session = self._decode(token)
        if len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]
        self._verified[digest] = session
        return session

    def _decode(self, token: str) -> Session:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(str(exc)) from None
        sub = claims.get("sub")
        if not is_valid_id(sub):
            # `sub` becomes `rt.user.<sub>`: ">" would subscribe to every user.
            raise Unauthorized("bad sub claim (letters, digits, _ and -)")
        name = claims.get("name")
        picture = claims.get("picture")
        actor = Actor(
            user_id=sub,
            name=name if isinstance(name, str) and name else sub,
            avatar=picture if isinstance(picture, str) and picture else None,
        )
        # The same skew as at the handshake, or a token accepted inside the leeway
        # would be cut off the moment it connected.
        return Session(actor, float(claims["exp"]) + self._leeway)
