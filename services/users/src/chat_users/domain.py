"""Pure user rules: what a presence change records, and that last seen only moves forward."""

from __future__ import annotations

from datetime import datetime

import msgspec

from chat_contracts import DomainError, ErrorCode
from chat_contracts.bus import PresenceChanged
from chat_runtime.clock import parse_iso

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
