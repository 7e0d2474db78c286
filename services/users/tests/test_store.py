"""The user store contract, run against every implementation (`store` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chat_users.domain import Profile, Sighting
from chat_users.store import UserStore

T0 = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)


async def test_first_sighting_creates_the_profile(store: UserStore) -> None:
    await store.record(Sighting(user_id="u", name="U", avatar="http://a", seen_at=T0))
    assert await store.profile("u") == Profile(
        user_id="u", name="U", avatar="http://a", last_seen_at=T0
    )
    assert await store.profile("nobody") is None


async def test_profile_without_last_seen(store: UserStore) -> None:
    await store.record(Sighting(user_id="u", name="U"))
    assert await store.profile("u") == Profile(user_id="u", name="U")
    assert await store.last_seen(["u"]) == {}


async def test_refresh_keeps_untold_fields(store: UserStore) -> None:
    await store.record(Sighting(user_id="u", name="U", avatar="http://a", seen_at=T0))
    await store.record(Sighting(user_id="u", name="New"))
    assert await store.profile("u") == Profile(
        user_id="u", name="New", avatar="http://a", last_seen_at=T0
    )


async def test_last_seen_never_moves_back(store: UserStore) -> None:
    later = T0 + timedelta(minutes=5)
    await store.record(Sighting(user_id="u", seen_at=later))
    await store.record(Sighting(user_id="u", seen_at=T0))
    assert await store.last_seen(["u"]) == {"u": later}
    even_later = later + timedelta(milliseconds=1)
    await store.record(Sighting(user_id="u", seen_at=even_later))
    assert await store.last_seen(["u"]) == {"u": even_later}


async def test_last_seen_of_many(store: UserStore) -> None:
    for i in range(3):
        await store.record(Sighting(user_id=f"u{i}", seen_at=T0 + timedelta(seconds=i)))
    await store.record(Sighting(user_id="quiet", name="Q"))
    got = await store.last_seen(["u2", "missing", "u0", "quiet", "u2"])
    assert got == {"u0": T0, "u2": T0 + timedelta(seconds=2)}
    assert await store.last_seen([]) == {}
