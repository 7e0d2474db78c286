"""Pure user rules: presence sightings, blocks, custom status, push devices.

Nothing here reads the time or does I/O: handlers pass `now` and the stored state in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

import emoji
import msgspec

from chat_contracts import DomainError, ErrorCode
from chat_contracts.bus import PresenceChanged
from chat_contracts.client import StatusSet
from chat_contracts.server import StatusUpdated
from chat_runtime.clock import iso, parse_iso

#: Statuses that mean the user was there at that moment. "offline" is announced when the
#: last socket is gone (the moment last seen is about); the others come from a connected
#: user, so a user who never went offline still has a last seen.
SEEN_STATUSES = frozenset({"online", "offline", "away", "busy"})


class Sighting(msgspec.Struct, frozen=True, kw_only=True):
    """What one presence change tells about a user (None = not told)."""

    user_id: str
    name: str | None = None
    avatar: str | None = None
    seen_at: datetime | None = None


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """A stored user."""

    user_id: str
    name: str | None = None
    avatar: str | None = None
    last_seen_at: datetime | None = None


class CustomStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A user's custom status as stored; `expires_at` None = until changed."""

    user_id: str
    text: str
    emoji: str | None = None
    expires_at: datetime | None = None


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """A registered push device (`notification:register`)."""

    user_id: str
    device_id: str
    platform: str
    token: str
    registered_at: datetime
    #: Which provider delivers to it: `fcm`, `apns` or `webpush` (`provider_of`).
    provider: str = "fcm"
    #: False: pushes carry no message text.
    previews: bool = True


def sighting(event: PresenceChanged) -> Sighting:
    """Read a gateway's presence change; an unreadable `at` is refused."""
    try:
        at = parse_iso(event.at)
    except ValueError:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR, f"`at` is not an ISO-8601 time: {event.at!r}", field="at"
        ) from None
    return Sighting(
        user_id=event.user_id,
        name=event.name or None,
        avatar=event.avatar or None,
        seen_at=at if event.status in SEEN_STATUSES else None,
    )


def later(stored: datetime | None, incoming: datetime | None) -> datetime | None:
    """Last seen only moves forward: presence events may arrive out of order."""
    if stored is None:
        return incoming
    if incoming is None:
        return stored
    return max(stored, incoming)


def merge(profile: Profile | None, seen: Sighting) -> Profile:
    """`profile` refreshed with what `seen` tells; untold fields keep their value."""
    if profile is None:
        profile = Profile(user_id=seen.user_id)
    return Profile(
        user_id=profile.user_id,
        name=seen.name if seen.name is not None else profile.name,
        avatar=seen.avatar if seen.avatar is not None else profile.avatar,
        last_seen_at=later(profile.last_seen_at, seen.seen_at),
    )


def in_request_order(user_ids: list[str], known: dict[str, datetime]) -> list[tuple[str, datetime]]:
    """The users of `user_ids` that have a last seen, once each, in request order."""
    return [(uid, known[uid]) for uid in dict.fromkeys(user_ids) if uid in known]


# --- blocks -----------------------------------------------------------------------


def require_blockable(actor_id: str, target: Profile | None, target_id: str) -> None:
    """A user may block anyone known but itself."""
    if target_id == actor_id:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "cannot block yourself", field="userId")
    if target is None:
        raise DomainError(ErrorCode.NOT_FOUND, "unknown user", field="userId")


def blocked_by(user_id: str, other_id: str, blockers: Iterable[str]) -> str | None:
    """THE blocking rule: who of the two blocks the other (the first found), or None.

    `blockers` are the users among the pair that placed a block on the other; a block in
    either direction hides each from the other and stops DMs and calls both ways (a
    blocker cannot message someone who cannot answer).
    """
    placed = set(blockers)
    for candidate in (user_id, other_id):
        if candidate in placed:
            return candidate
    return None


# --- custom status ----------------------------------------------------------------


def custom_status(user_id: str, payload: StatusSet, now: datetime) -> CustomStatus | None:
    """The status `status:set` asks for (None = cleared), or a VALIDATION_ERROR.

    `emoji` must be one emoji (skin tones and ZWJ sequences included), judged by the
    `emoji` package's Unicode data; `expiresAt` must lie in the future.
    """
    text = payload.status.strip()
    if payload.emoji is not None and not emoji.is_emoji(payload.emoji):
        raise DomainError(ErrorCode.VALIDATION_ERROR, "not a single emoji", field="emoji")
    expires = payload.expires_at
    if expires is not None:
        if expires.tzinfo is None:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, "expiresAt needs a time zone (Z)", field="expiresAt"
            )
        if expires <= now:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, "expiresAt is not in the future", field="expiresAt"
            )
    if not text and payload.emoji is None:
        return None
    return CustomStatus(user_id=user_id, text=text, emoji=payload.emoji, expires_at=expires)


def status_event(user_id: str, status: CustomStatus | None) -> StatusUpdated:
    """`status:updated` for a status (None = cleared: `status: ""`)."""
    if status is None:
        return StatusUpdated(user_id=user_id, status="")
    return StatusUpdated(
        user_id=user_id,
        status=status.text,
        emoji=status.emoji,
        expires_at=None if status.expires_at is None else iso(status.expires_at),
    )


def current(status: CustomStatus | None, now: datetime) -> CustomStatus | None:
    """The status as readers see it: an expired one is gone even before the sweep."""
    if status is None or (status.expires_at is not None and status.expires_at <= now):
        return None
    return status


def status_text(status: CustomStatus | None) -> str | None:
    """`customStatus` of `presence:update`: emoji and text as one line."""
    if status is None:
        return None
    return " ".join(part for part in (status.emoji, status.text) if part) or None


# --- push devices ------------------------------------------------------------------


def provider_of(platform: str, requested: str | None) -> str:
    """The push provider of a device: Web Push for web, APNs for an iOS device that
    registered an APNs token, FCM otherwise (Android, and iOS apps using FCM)."""
    if platform == "web":
        return "webpush"
    if platform == "ios" and requested == "apns":
        return "apns"
    return "fcm"


def require_token(provider: str, token: str) -> None:
    """A token the provider can use: a web PushSubscription as JSON with an http(s)
    `endpoint` and both keys; an APNs device token in hex; an FCM token without spaces.
    Anything else is a VALIDATION_ERROR naming `token` (caught at registration, not at
    the first push)."""
    if provider == "webpush":
        try:
            sub = json.loads(token)
            endpoint, keys = sub["endpoint"], sub["keys"]
            valid = (
                isinstance(endpoint, str)
                and endpoint.startswith(("https://", "http://"))
                and isinstance(keys.get("p256dh"), str)
                and isinstance(keys.get("auth"), str)
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            valid = False
        if not valid:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR,
                "a web token is the PushSubscription as JSON (endpoint, keys.p256dh, keys.auth)",
                field="token",
            )
    elif provider == "apns":
        if not all(c in "0123456789abcdefABCDEF" for c in token) or len(token) < 32:
            raise DomainError(
                ErrorCode.VALIDATION_ERROR, "an APNs device token is hexadecimal", field="token"
            )
    elif any(c.isspace() for c in token):
        raise DomainError(ErrorCode.VALIDATION_ERROR, "malformed FCM token", field="token")


def to_drop(devices: list[Device], keep: int) -> list[Device]:
    """Past `keep` devices the oldest registrations go (ties: by device id)."""
    if len(devices) <= keep:
        return []
    ordered = sorted(devices, key=lambda d: (d.registered_at, d.device_id))
    return ordered[: len(devices) - keep]
