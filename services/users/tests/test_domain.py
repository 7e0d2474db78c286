"""The pure user rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chat_contracts import DomainError, ErrorCode
from chat_contracts.bus import PresenceChanged
from chat_users import domain
from chat_users.domain import Profile, Sighting

T0 = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)


def test_offline_and_online_are_sightings() -> None:
    for status in ("offline", "online", "away", "busy"):
        seen = domain.sighting(
            PresenceChanged(user_id="u", status=status, at="2026-01-01T12:00:00.250Z", name="U")
        )
        assert seen == Sighting(user_id="u", name="U", seen_at=T0)


def test_unknown_status_refreshes_the_profile_only() -> None:
    seen = domain.sighting(PresenceChanged(user_id="u", status="?", at="2026-01-01T12:00:00Z"))
    assert seen.seen_at is None


def test_bad_time_is_refused() -> None:
    with pytest.raises(DomainError, check=lambda e: e.code is ErrorCode.VALIDATION_ERROR):
        domain.sighting(PresenceChanged(user_id="u", status="offline", at="yesterday"))


def test_last_seen_only_moves_forward() -> None:
    later = T0 + timedelta(seconds=5)
    assert domain.later(None, T0) == T0
    assert domain.later(T0, None) == T0
    assert domain.later(T0, later) == later
    assert domain.later(later, T0) == later
    assert domain.later(None, None) is None


def test_merge_keeps_untold_fields() -> None:
    stored = Profile(user_id="u", name="Old", avatar="http://a", last_seen_at=T0)
    merged = domain.merge(stored, Sighting(user_id="u", name="New"))
    assert merged == Profile(user_id="u", name="New", avatar="http://a", last_seen_at=T0)
    fresh = domain.merge(None, Sighting(user_id="v", seen_at=T0))
    assert fresh == Profile(user_id="v", last_seen_at=T0)


def test_request_order_and_duplicates() -> None:
    known = {"a": T0, "c": T0 + timedelta(seconds=1)}
    assert domain.in_request_order(["c", "b", "a", "c"], known) == [
        ("c", known["c"]),
        ("a", T0),
    ]
