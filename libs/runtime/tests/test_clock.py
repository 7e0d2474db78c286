"""Time formatting and id generation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from chat_runtime.clock import ManualClock, TimeOrderedIds, iso, parse_iso


def test_iso_is_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    assert iso(moment) == "2026-01-02T03:04:05.678Z"
    plus_two = moment.astimezone(timezone(timedelta(hours=2)))
    assert iso(plus_two) == "2026-01-02T03:04:05.678Z"
    assert parse_iso(iso(moment)) == moment.replace(microsecond=678_000)


def test_ids_sort_by_time_and_do_not_repeat() -> None:
    clock = ManualClock()
    ids = TimeOrderedIds(clock)
    made = []
    for _ in range(100):
        made.append(ids.new("m_"))
        clock.advance(milliseconds=1)
    assert made == sorted(made)
    assert len(set(made)) == 100
    assert all(i.startswith("m_") and len(i) == 34 for i in made)
    same_ms = {ids.new("") for _ in range(1000)}
    assert len(same_ms) == 1000
