"""Time and id sources, injected everywhere so that domain code never reads the time."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current UTC time."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **kwargs: float) -> None:
        """Move forward by a `timedelta(**kwargs)`."""
        self._now += timedelta(**kwargs)


def iso(moment: datetime) -> str:
    """The protocol's time format: ISO-8601 UTC with milliseconds and `Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Inverse of `iso` (accepts any ISO-8601 with an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class IdGenerator(Protocol):
    """Something that makes new opaque ids."""

    def new(self, prefix: str) -> str: ...


_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


class TimeOrderedIds:
    """Ids that sort by creation time (48-bit ms timestamp + 80 random bits, base32).

    Time order keeps MongoDB's and SQLite's id indexes append-mostly; the random part
    makes ids unguessable and unique across processes without coordination.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()

    def new(self, prefix: str) -> str:
        millis = int(self._clock.now().timestamp() * 1000)
        value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
        chars = []
        for _ in range(26):
            chars.append(_ALPHABET[value & 31])
            value >>= 5
        return prefix + "".join(reversed(chars))


def monotonic_ms() -> float:
    """Milliseconds on the monotonic clock, for timers and deadlines (never for stored times)."""
    return time.monotonic() * 1000
