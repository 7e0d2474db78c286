"""`memory`: large buffers keep their own mappings (glibc); RSS readings and the trim."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

from chat_runtime import memory

# Allocates and frees a 24 MiB block (glibc then raises its mmap threshold to 24 MiB unless
# it is pinned), then allocates 8 MiB and prints how many blocks are mmapped. glibc asks
# the threshold only when no free chunk in the heap fits: a 200 KiB probe found one on a
# CI machine whose interpreter start left that much free, and 8 MiB leaves no such room.
PROBE = """
import ctypes, sys
from chat_runtime import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "pinned":
    assert memory.fix_mmap_threshold()
before = libc.mallinfo2().hblks
libc.free(libc.malloc(24 << 20))
block = libc.malloc(8 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _glibc_with_mallinfo2() -> bool:
    name = ctypes.util.find_library("c")
    return name is not None and hasattr(ctypes.CDLL(name), "mallinfo2")


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc >= 2.33 (mallinfo2) only")
@pytest.mark.parametrize(("mode", "mapped"), [("default", 0), ("pinned", 1)])
def test_a_large_buffer_after_a_larger_one_is_mapped_only_when_pinned(
    mode: str, mapped: int
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == mapped, out.stderr


def test_rss_of_this_process_and_of_one_by_pid() -> None:
    held = bytearray(64 << 20)  # 64 MiB, touched: resident
    own, by_pid = memory.rss_kib(), memory.rss_kib(os.getpid())
    assert own >= 64 * 1024
    assert abs(own - by_pid) < 4 * 1024, (own, by_pid)
    del held
    with pytest.raises(FileNotFoundError):
        memory.rss_kib(2**22 + 7)  # above pid_max's default: no such process


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc >= 2.33 (mallinfo2) only")
def test_trim_gives_back_freed_heap_pages() -> None:
    # 2,000 blocks of 64 KiB (below the mmap threshold: heap), all but the last freed,
    # so the freed pages sit below a live block where only malloc_trim can return them.
    blocks = [ctypes.create_string_buffer(64 << 10) for _ in range(2000)]
    del blocks[:-1]
    report = memory.trim_rss()
    assert report["trimmed"] is True
    assert isinstance(report["before_kib"], int)
    assert isinstance(report["after_kib"], int)
    assert report["after_kib"] < report["before_kib"], report
