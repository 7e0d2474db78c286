"""`Reached`: the sockets a multi-copy event reached, bounded by age and by count."""

from __future__ import annotations

from chat_gateway.reached import Reached


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_key_keeps_its_sockets_while_it_is_recent() -> None:
    clock = Clock()
    reached = Reached(limit=10, window_s=10.0, clock=clock)
    reached.of("e1").update({"s1", "s2"})
    clock.now += 9.0
    assert reached.of("e1") == {"s1", "s2"}  # a copy 9 s later still skips them


def test_entries_older_than_the_window_are_dropped() -> None:
    clock = Clock()
    reached = Reached(limit=10_000, window_s=10.0, clock=clock)
    for i in range(1_000):  # 100 events a second for 10 s
        reached.of(f"e{i}").add("s1")
        clock.now += 0.01
    assert len(reached) == 1_000
    clock.now += 5.0
    reached.of("late")
    assert len(reached) == 501  # the last 5 s of events, and the new one
    clock.now += 10.0
    assert reached.of("e999") == set()  # expired: a new, empty entry
    assert len(reached) == 1


def test_past_the_limit_the_oldest_goes_first() -> None:
    reached = Reached(limit=3, window_s=10.0, clock=Clock())
    for key in ("a", "b", "c", "d"):
        reached.of(key).add(key)
    assert len(reached) == 3
    assert reached.of("a") == set()  # dropped
    assert reached.of("d") == {"d"}
