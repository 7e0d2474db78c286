"""The C allocator's settings for a long-running service (glibc; a no-op elsewhere), and
the process memory readings the debug endpoints and the soak use (`rss_kib`, `trim_rss`).

glibc serves a `malloc` of 128 KiB or more with its own `mmap`, returned to the system
on `free` — until the first such block is freed: then it raises the threshold to that
block's size (up to 32 MiB), so later buffers of that size come from the heap, and the
heap's free pages stay resident between them. Our services free such buffers all the
time (socket reads of up to 256 KiB, NATS batches, JSON of a history page). In a
4-minute, 600-client run of the soak's mix, `malloc_trim(0)` gave back 5.6 MiB of a
gateway at warm-up and 12.5 MiB at the end: slack that grew like a leak. With the
threshold fixed at 128 KiB the slack grew half as fast (gateway-a 93.4 → 106.3 MiB
before, 92.7 → 99.2 MiB after; the messages worker 1,112 → 148 KiB/min).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path
from typing import Any, Final

#: glibc's `M_MMAP_THRESHOLD` parameter number (malloc.h).
M_MMAP_THRESHOLD: Final = -3
#: Blocks this large or larger get their own mapping, returned on `free` (glibc's own
#: initial value; setting it also turns off the dynamic raise described above).
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


def _libc_function(name: str) -> Any:  # a ctypes function; its class is private
    libc = _libc()
    return None if libc is None else getattr(libc, name, None)


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold (see the module docstring); False where the C library
    has no `mallopt` (musl, macOS) or refused the value."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def rss_kib(pid: int | None = None) -> int:
    """Resident set size (KiB) of a process (this one by default), from /proc; raises
    `OSError` where there is no such process or no /proc."""
    path = Path(f"/proc/{'self' if pid is None else pid}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise OSError(f"no VmRSS in {path}")


def trim_rss() -> dict[str, int | bool]:
    """This process's RSS before and after glibc's `malloc_trim(0)`, which returns free
    heap pages to the system (what it gives back is allocator slack, not a leak);
    `trimmed`: whether glibc gave any back (always False without glibc: musl, macOS)."""
    before = rss_kib()
    malloc_trim = _libc_function("malloc_trim")
    trimmed = malloc_trim is not None and bool(malloc_trim(0))
    return {"before_kib": before, "after_kib": rss_kib(), "trimmed": trimmed}
