"""Which local sockets an event that comes in several copies has already reached.

Two kinds of fan-out arrive more than once on purpose: an event published on several
rooms with one `dedupe_id` (a socket in two of the rooms gets it once), and a room event
copied to its newest members' own subjects (`once_id`, see chat_runtime.joins). The
copies are published back to back, so an entry is needed for milliseconds, or up to
the room order's hold (`ordering.HOLD_S`, 1 s) when a copy waits behind a gap.

Entries are dropped after `window_s` as well as past `limit`: bounded by count alone,
the two maps filled to their 4,096 + 1,024 entries (~5 MiB of sets of socket ids) over
the soak's first minutes, RSS growth that looked like a leak (bench/soak.md); bounded by
age too they hold only the last few seconds' worth (~10 entries a second in the soak).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

#: Long enough for a copy held behind a seq gap (1 s) on a stalled event loop.
WINDOW_S: Final = 10.0


class Reached:
    """key -> the socket ids it reached; entries expire after `window_s`, and the oldest
    go first past `limit` keys."""

    def __init__(
        self, limit: int, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, set[str]]] = OrderedDict()

    def of(self, key: str) -> set[str]:
        """The sockets `key` reached so far (a new, empty set the first time); the
        caller adds to it."""
        now = self._clock()
        entries = self._entries
        cutoff = now - self._window
        while entries:
            at = next(iter(entries.values()))[0]
            if at > cutoff:
                break
            entries.popitem(last=False)
        found = entries.get(key)
        if found is not None:
            return found[1]
        reached: set[str] = set()
        entries[key] = (now, reached)
        if len(entries) > self._limit:
            entries.popitem(last=False)
        return reached

    def __len__(self) -> int:
        return len(self._entries)
