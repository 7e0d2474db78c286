"""Closing a gateway's sockets on SIGTERM, spread over a window in jittered batches.

Every socket closed makes a client reconnect, to another gateway. Closing 2,000 at once
sends 2,000 handshakes (JWT, chat lists from two workers, presence) to the others in
the same instant; ~1,400 connects/s is what one gateway takes (ANCHORS.md). So each
socket gets a random moment within the window and every tick closes those whose moment
has come: the reconnects arrive at an even rate instead of as one herd.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Collection
from typing import Protocol

from chat_gateway.wire import CloseCode

#: Sockets closed per tick are those due by then; 50 ms ticks make ~20 batches a second.
TICK_S = 0.05
#: A few sockets need no spreading: the window used is at most this much per socket
#: (5 ms, i.e. reconnects at >= 200/s towards the others), so a gateway with 10
#: sockets drains in 50 ms and one with 2,000 takes the whole 10 s window.
SPREAD_MS_PER_SOCKET = 5


class Closable(Protocol):
    """A socket the gateway can close (lean.LeanConnection)."""

    def close(self, code: int = 1000, reason: str = "") -> None: ...


def window_for(sockets: int, window_ms: int) -> float:
    """The window (s) over which `sockets` sockets are closed."""
    return min(window_ms, sockets * SPREAD_MS_PER_SOCKET) / 1000


async def close_spread(
    sockets: Collection[Closable], window_s: float, rng: random.Random | None = None
) -> None:
    """Close every socket (1001 going away) at a random moment within `window_s`."""
    rng = rng or random.Random()
    due = sorted(((rng.uniform(0, window_s), i, s) for i, s in enumerate(sockets)))
    started = time.monotonic()
    index = 0
    while index < len(due):
        elapsed = time.monotonic() - started
        while index < len(due) and due[index][0] <= elapsed:
            due[index][2].close(CloseCode.GOING_AWAY, "server going away")
            index += 1
        if index < len(due):
            await asyncio.sleep(min(TICK_S, max(0.0, due[index][0] - elapsed)))
