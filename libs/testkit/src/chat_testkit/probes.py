"""What a reliability test reads from a running process: what its log said since a
mark (an unhandled exception shows as a Python traceback there); and, in
the test's own event loop, which background tasks are still running."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from chat_testkit.servers import ServiceProcess


@dataclass
class LogMark:
    """A position in a service's log; `since()` is what was written after it."""

    proc: ServiceProcess
    offset: int = 0

    @classmethod
    def now(cls, proc: ServiceProcess) -> LogMark:
        """A mark at the current end of the log."""
        return cls(proc, proc.log.stat().st_size)

    def since(self) -> str:
        """The log text written after the mark."""
        with self.proc.log.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def tracebacks(self) -> list[str]:
        """Every traceback logged after the mark, with a few lines of context each."""
        lines = self.since().splitlines()
        found: list[str] = []
        for i, line in enumerate(lines):
            if "Traceback (most recent call last)" in line:
                found.append("\n".join(lines[max(0, i - 2) : i + 25]))
        return found


def tasks_running(qualname: str) -> list[asyncio.Task[Any]]:
    """The unfinished tasks of the running loop whose coroutine is `qualname` (e.g.
    `"LeanServer._sweep"`): a `close()` that only cancels leaves them here."""
    return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == qualname]
