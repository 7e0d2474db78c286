"""drain.close_spread: every socket closed once, 1001, spread over the window."""

from __future__ import annotations

import random
import time

from chat_gateway import drain


class FakeSocket:
    def __init__(self) -> None:
        self.closed: list[tuple[int, str, float]] = []

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed.append((code, reason, time.monotonic()))


def test_the_window_grows_with_the_sockets_up_to_the_setting() -> None:
    assert drain.window_for(0, 10_000) == 0
    assert drain.window_for(10, 10_000) == 0.05
    assert drain.window_for(300, 10_000) == 1.5
    assert drain.window_for(5_000, 10_000) == 10.0


async def test_every_socket_is_closed_once_spread_over_the_window() -> None:
    sockets = [FakeSocket() for _ in range(400)]
    started = time.monotonic()
    await drain.close_spread(sockets, 0.5, random.Random(1))
    took = time.monotonic() - started
    assert all(len(s.closed) == 1 for s in sockets)
    assert {s.closed[0][0] for s in sockets} == {1001}
    assert 0.4 < took < 0.8
    # No herd: no 50 ms tick closes more than a quarter of them (uniform: ~10 %).
    ticks: dict[int, int] = {}
    for s in sockets:
        tick = int((s.closed[0][2] - started) / drain.TICK_S)
        ticks[tick] = ticks.get(tick, 0) + 1
    assert max(ticks.values()) < len(sockets) / 4, ticks
    assert len(ticks) >= 8


async def test_no_window_closes_all_at_once() -> None:
    sockets = [FakeSocket() for _ in range(5)]
    await drain.close_spread(sockets, 0.0)
    assert all(len(s.closed) == 1 for s in sockets)
