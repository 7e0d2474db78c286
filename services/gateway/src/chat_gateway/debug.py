"""Process memory readings for the debug endpoints (Linux; glibc for the trim)."""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path


def rss_kib() -> int:
    """This process's resident set size (KiB), from /proc (0 where there is none)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def trim_rss() -> dict[str, int | bool]:
    """RSS before and after glibc's `malloc_trim(0)` (returns free heap pages to the
    system); `trimmed` is False where there is no glibc (musl, macOS)."""
    before = rss_kib()
    name = ctypes.util.find_library("c")
    trimmed = False
    if name is not None:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            trimmed = bool(libc.malloc_trim(0))
    return {"before_kib": before, "after_kib": rss_kib(), "trimmed": trimmed}
