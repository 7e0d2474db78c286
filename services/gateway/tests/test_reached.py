"""`Reached`: the sockets a multi-copy event reached, bounded by age and by count."""

from __future__ import annotations

from chat_gateway.reached import Reached
from chat_runtime.clock import ManualTicks


def test_a_key_keeps_its_sockets_while_it_is_recent() -> None:
    clock = ManualTicks()
    reached = Reached(limit=10, window_s=10.0, clock=clock)
    reached.of("e1").update({"s1", "s2"})
    clock.now += 9.0
    assert reached.of("e1") == {"s1", "s2"}  # a copy 9 s later still skips them


def test_entries_older_than_the_window_are_dropped() -> None:
    clock = ManualTicks(start=0.0)
    reached = Reached(limit=10_000, window_s=10.0, clock=clock)
    for i in range(1_000):  # 100 events a second for 10 s
        clock.now = i / 100
        reached.of(f"e{i}").add("s1")
    assert len(reached) == 1_000
    clock.now = 15.005  # events from 5.005 s on are recent: e501..e999
    reached.of("late")
    assert len(reached) == 500  # those 499, and the new one
    clock.now += 10.0
    assert reached.of("e999") == set()  # expired: a new, empty entry
    assert len(reached) == 1


def test_past_the_limit_the_oldest_goes_first() -> None:
    reached = Reached(limit=3, window_s=10.0, clock=ManualTicks())
    for key in ("a", "b", "c", "d"):
        reached.of(key).add(key)
    assert len(reached) == 3
    assert reached.of("a") == set()  # dropped
    assert reached.of("d") == {"d"}
