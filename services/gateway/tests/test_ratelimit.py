"""Which bucket each client event takes its token from."""

from __future__ import annotations

from chat_contracts import limits, routes
from chat_gateway.ratelimit import LEASE_TTL_S, Bucket, Leases, buckets_by_event, lease_size
from chat_gateway.settings import GatewaySettings
from chat_runtime.clock import ManualTicks
from chat_runtime.settings import load_settings

#: Passes any secret policy: long, random-looking, with audience and issuer.
_JWT = {
    "CHAT_JWT_SECRET": "k3V9qX2mZ7pL4wR8tY1uB6nC0dF5gH-jA2sE9",
    "CHAT_JWT_AUDIENCE": "chat",
    "CHAT_JWT_ISSUER": "chat-test",
}


def test_create_and_sync_have_their_own_stricter_buckets() -> None:
    buckets = buckets_by_event(load_settings(GatewaySettings, _JWT))
    assert buckets["group:create"] == Bucket("create", 10 / 60, 10)
    assert buckets["sync"] == Bucket("sync", 30 / 60, 30)
    assert buckets["message:send"] == Bucket("send", 5.0, 10)
    assert buckets["typing:start"] is buckets["typing:stop"]
    assert buckets["group:update"] == Bucket("other", 1.0, 60)
    assert limits.RATE_GROUP_CREATE_PER_MIN < limits.RATE_OTHER_PER_MIN
    assert limits.RATE_SYNC_PER_MIN < limits.RATE_OTHER_PER_MIN


def test_every_event_has_a_bucket_and_the_settings_move_them() -> None:
    env = {**_JWT, "CHAT_RATE_GROUP_CREATE_PER_MIN": "3", "CHAT_RATE_SYNC_PER_MIN": "120"}
    buckets = buckets_by_event(load_settings(GatewaySettings, env))
    assert set(buckets) == {route.event for route in routes.ROUTES}
    assert buckets["group:create"] == Bucket("create", 3 / 60, 3)
    assert buckets["sync"] == Bucket("sync", 2.0, 120)


def test_lease_size_is_a_second_of_refill_at_most_half_the_burst() -> None:
    assert lease_size(Bucket("send", 5.0, 10)) == 5
    assert lease_size(Bucket("typing", 5.0, 5)) == 2
    # Slow buckets lease one token at a time: exactly the Redis bucket.
    assert lease_size(Bucket("create", 10 / 60, 10)) == 1
    assert lease_size(Bucket("other", 1.0, 60)) == 1
    assert lease_size(Bucket("big", 100_000, 100_000)) == 50_000


def test_leases_are_spent_once_and_expire() -> None:
    clock = ManualTicks()
    leases = Leases(clock)
    assert not leases.take("k")
    leases.add("k", 2)
    assert [leases.take("k") for _ in range(3)] == [True, True, False]
    leases.add("k", 3)
    clock.now += LEASE_TTL_S
    assert not leases.take("k")  # expired unused tokens are not spent
    assert len(leases) == 0
