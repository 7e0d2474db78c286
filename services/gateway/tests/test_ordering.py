"""A room's live events in seq order (`ordering.RoomOrder`): held behind a gap until the
missing seq arrives or the hold expires."""

from __future__ import annotations

from chat_gateway.ordering import RoomOrder


def test_in_order_events_pass_at_once_and_the_first_seq_seen_is_the_start() -> None:
    order: RoomOrder[str] = RoomOrder()
    assert order.arrive("g", 41, "m41") == ["m41"]  # joined mid-conversation
    assert order.arrive("g", 42, "m42") == ["m42"]
    assert order.arrive("g", None, "edit") == ["edit"]
    assert not order.holding("g")


def test_a_gap_holds_the_room_until_the_missing_seq_comes_and_then_releases_in_order() -> None:
    order: RoomOrder[str] = RoomOrder()
    order.arrive("g", 5, "m5")
    assert order.arrive("g", 7, "m7") == []
    assert order.holding("g")
    # Later events of the room wait behind it (a reaction to 7 must not overtake it).
    assert order.arrive("g", None, "react7") == []
    assert order.arrive("g", 8, "m8") == []
    assert order.arrive("other", 1, "o1") == ["o1"]  # other rooms are not held
    assert order.arrive("g", 6, "m6") == ["m6", "m7", "react7", "m8"]
    assert not order.holding("g")
    assert order.arrive("g", 9, "m9") == ["m9"]


def test_an_expired_hold_skips_the_missing_seq_and_a_second_gap_holds_again() -> None:
    order: RoomOrder[str] = RoomOrder()
    order.arrive("g", 1, "m1")
    order.arrive("g", 3, "m3")
    order.arrive("g", 4, "m4")
    order.arrive("g", 7, "m7")  # 5 and 6 missing too
    order.arrive("g", None, "edit")
    assert order.expire("g") == ["m3", "m4"]
    assert order.holding("g")
    assert order.expire("g") == ["m7", "edit"]
    assert not order.holding("g")
    # The skipped seq arriving late is delivered, not dropped (sync would bring it too).
    assert order.arrive("g", 2, "m2") == ["m2"]
    assert order.arrive("g", 8, "m8") == ["m8"]
    assert order.expire("g") == []


def test_leaving_a_room_forgets_its_count_and_what_it_held() -> None:
    order: RoomOrder[str] = RoomOrder()
    order.arrive("g", 1, "m1")
    order.arrive("g", 3, "m3")
    assert order.forget("g") == ["m3"]
    assert not order.holding("g")
    assert order.arrive("g", 10, "m10") == ["m10"]  # rejoined later: counted afresh
