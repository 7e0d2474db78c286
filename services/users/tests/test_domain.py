"""The pure user rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chat_contracts import DomainError, ErrorCode
from chat_contracts.bus import PresenceChanged
from chat_contracts.client import StatusSet
from chat_contracts.server import StatusUpdated
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


# --- blocks


def test_blocking_oneself_or_an_unknown_user_is_refused() -> None:
    with pytest.raises(DomainError) as own:
        domain.require_blockable("ann", domain.Profile(user_id="ann"), "ann")
    assert (own.value.code, own.value.field) == (ErrorCode.VALIDATION_ERROR, "userId")
    with pytest.raises(DomainError) as unknown:
        domain.require_blockable("ann", None, "ghost")
    assert unknown.value.code is ErrorCode.NOT_FOUND
    domain.require_blockable("ann", domain.Profile(user_id="bob"), "bob")


def test_the_blocking_rule_holds_both_ways() -> None:
    assert domain.blocked_by("ann", "bob", []) is None
    assert domain.blocked_by("ann", "bob", ["bob"]) == "bob"
    assert domain.blocked_by("bob", "ann", ["bob"]) == "bob"
    assert domain.blocked_by("ann", "bob", ["bob", "ann"]) == "ann"


# --- custom status

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_status_with_emoji_and_expiry() -> None:
    payload = StatusSet(
        status=" In a meeting ", emoji="👩🏽‍💻", expires_at=NOW + timedelta(hours=1)
    )
    status = domain.custom_status("ann", payload, NOW)
    assert status == domain.CustomStatus(
        user_id="ann", text="In a meeting", emoji="👩🏽‍💻", expires_at=NOW + timedelta(hours=1)
    )
    assert domain.status_event("ann", status) == StatusUpdated(
        user_id="ann",
        status="In a meeting",
        emoji="👩🏽‍💻",
        expires_at="2026-01-01T13:00:00.000Z",
    )
    assert domain.status_text(status) == "👩🏽‍💻 In a meeting"


def test_empty_status_clears() -> None:
    assert domain.custom_status("ann", StatusSet(status="  "), NOW) is None
    assert domain.status_event("ann", None) == StatusUpdated(user_id="ann", status="")


@pytest.mark.parametrize("bad", ["ab", "🍕🍕", "a", "🍕x"])
def test_emoji_must_be_one_emoji(bad: str) -> None:
    with pytest.raises(DomainError) as exc:
        domain.custom_status("ann", StatusSet(status="x", emoji=bad), NOW)
    assert exc.value.field == "emoji"


def test_expiry_must_be_in_the_future() -> None:
    for when in (NOW, NOW - timedelta(seconds=1)):
        with pytest.raises(DomainError) as exc:
            domain.custom_status("ann", StatusSet(status="x", expires_at=when), NOW)
        assert (exc.value.code, exc.value.field) == (ErrorCode.VALIDATION_ERROR, "expiresAt")


def test_an_expired_status_reads_as_none_before_the_sweep() -> None:
    status = domain.CustomStatus(user_id="a", text="x", expires_at=NOW)
    assert domain.current(status, NOW - timedelta(milliseconds=1)) == status
    assert domain.current(status, NOW) is None
    assert domain.current(domain.CustomStatus(user_id="a", text="x"), NOW) is not None


def test_devices_past_the_limit_drop_the_oldest() -> None:
    devices = [
        domain.Device(
            user_id="u",
            device_id=f"d{n}",
            platform="web",
            token="t",
            registered_at=NOW + timedelta(seconds=n % 3),
        )
        for n in range(5)
    ]
    assert domain.to_drop(devices, 5) == []
    assert [d.device_id for d in domain.to_drop(devices, 3)] == ["d0", "d3"]


def test_push_tokens_are_checked_at_registration() -> None:
    web = '{"endpoint": "https://push.example/x", "keys": {"p256dh": "BP", "auth": "au"}}'
    domain.require_token("webpush", web)
    domain.require_token("apns", "ab" * 32)
    domain.require_token("fcm", "dGVzdA:APA91b-x_y")
    for provider, bad in (
        ("webpush", "not json"),
        ("webpush", '{"endpoint": "ftp://x", "keys": {"p256dh": "a", "auth": "b"}}'),
        ("webpush", '{"endpoint": "https://x"}'),
        ("webpush", "[]"),
        ("apns", "zz" * 32),
        ("apns", "abcd"),
        ("fcm", "two words"),
    ):
        with pytest.raises(DomainError) as exc:
            domain.require_token(provider, bad)
        assert (exc.value.code, exc.value.field) == (ErrorCode.VALIDATION_ERROR, "token")
