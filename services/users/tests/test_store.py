"""The user store contract, run against every implementation (`store` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chat_users.domain import CustomStatus, Device, Profile, Sighting
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


# --- blocks


async def test_block_is_stored_once_and_seen_from_both_sides(store: UserStore) -> None:
    assert await store.block("ann", "bob", T0) is True
    assert await store.block("ann", "bob", T0) is False
    assert await store.blockers("ann", "bob") == ["ann"]
    assert await store.blockers("bob", "ann") == ["ann"]
    assert await store.blockers("ann", "cat") == []
    assert await store.hidden("ann") == ["bob"]
    assert await store.hidden("bob") == ["ann"]
    assert await store.hidden("cat") == []


async def test_mutual_blocks_and_unblock(store: UserStore) -> None:
    await store.block("ann", "bob", T0)
    await store.block("bob", "ann", T0)
    await store.block("cat", "ann", T0)
    assert sorted(await store.blockers("ann", "bob")) == ["ann", "bob"]
    assert await store.hidden("ann") == ["bob", "cat"]
    assert await store.unblock("ann", "bob") is True
    assert await store.unblock("ann", "bob") is False
    assert await store.blockers("ann", "bob") == ["bob"]
    assert await store.hidden("ann") == ["bob", "cat"]
    await store.unblock("bob", "ann")
    assert await store.hidden("ann") == ["cat"]


# --- custom status


async def test_status_set_read_and_clear(store: UserStore) -> None:
    status = CustomStatus(user_id="ann", text="lunch", emoji="🍕", expires_at=T0)
    await store.set_status("ann", status)
    await store.set_status("bob", CustomStatus(user_id="bob", text="here"))
    assert await store.statuses(["ann", "bob", "cat"]) == {
        "ann": status,
        "bob": CustomStatus(user_id="bob", text="here"),
    }
    await store.set_status("ann", None)
    assert await store.statuses(["ann"]) == {}


async def test_expired_statuses_are_found_in_expiry_order_and_cleared_once(
    store: UserStore,
) -> None:
    soon = CustomStatus(user_id="a", text="x", expires_at=T0 + timedelta(seconds=1))
    sooner = CustomStatus(user_id="b", text="y", expires_at=T0)
    later = CustomStatus(user_id="c", text="z", expires_at=T0 + timedelta(hours=1))
    forever = CustomStatus(user_id="d", text="w")
    for status in (soon, sooner, later, forever):
        await store.set_status(status.user_id, status)
    assert await store.expired_statuses(T0 - timedelta(seconds=1), 10) == []
    assert await store.expired_statuses(T0 + timedelta(seconds=1), 10) == [sooner, soon]
    assert await store.expired_statuses(T0 + timedelta(seconds=1), 1) == [sooner]
    assert await store.clear_expired(sooner) is True
    assert await store.clear_expired(sooner) is False  # another sweeper won
    # A status replaced after the sweep read it stays.
    await store.set_status("a", CustomStatus(user_id="a", text="new"))
    assert await store.clear_expired(soon) is False
    assert set(await store.statuses(["a", "b", "c", "d"])) == {"a", "c", "d"}


# --- push devices


def _device(n: int, user: str = "ann", token: str = "t") -> Device:
    return Device(
        user_id=user,
        device_id=f"d{n:02d}",
        platform="android",
        token=f"{token}{n}",
        registered_at=T0 + timedelta(seconds=n),
    )


async def test_devices_keep_the_newest(store: UserStore) -> None:
    for n in range(3):
        assert await store.register_device(_device(n), keep=3) == []
    await store.register_device(_device(0, user="bob"), keep=3)
    dropped = await store.register_device(_device(3), keep=3)
    assert [d.device_id for d in dropped] == ["d00"]
    assert [d.device_id for d in await store.devices("ann")] == ["d01", "d02", "d03"]
    assert [d.device_id for d in await store.devices("bob")] == ["d00"]


async def test_reregistering_a_device_replaces_its_token(store: UserStore) -> None:
    await store.register_device(_device(1), keep=25)
    renewed = _device(1, token="new")
    await store.register_device(renewed, keep=25)
    assert await store.devices("ann") == [renewed]
    # A provider's "invalid" for the old token does not remove the renewed device.
    assert await store.remove_token("ann", "d01", "t1") is False
    assert await store.remove_token("ann", "d01", "new1") is True
    assert await store.devices("ann") == []


async def test_unregister(store: UserStore) -> None:
    await store.register_device(_device(1), keep=25)
    assert await store.unregister_device("ann", "d01") is True
    assert await store.unregister_device("ann", "d01") is False
    assert await store.devices("ann") == []


async def test_push_records_per_message_and_device(store: UserStore) -> None:
    await store.set_push_state("m1", "ann", "d1", "sending", T0)
    await store.set_push_state("m1", "ann", "d1", "sent", T0)
    await store.set_push_state("m1", "bob", "d1", "sent", T0 + timedelta(hours=2))
    await store.set_push_state("m2", "ann", "d1", "sent", T0)
    assert await store.push_states("m1") == {("ann", "d1"): "sent", ("bob", "d1"): "sent"}
    assert await store.push_states("m9") == {}
    assert await store.forget_pushes(T0 + timedelta(hours=1)) == 2
    assert await store.push_states("m1") == {("bob", "d1"): "sent"}
