"""Process accounting from /proc: CPU time, RSS, CPU pinning, machine-wide load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process in bytes; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK


@dataclass
class CpuSample:
    """CPU seconds per named process, plus the machine's busy seconds, at one instant."""

    per_process: dict[str, float]
    machine: float
    at: float


class CpuMeter:
    """Samples the CPU time of a fixed set of named processes."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)

    def sample(self) -> CpuSample:
        loop_time = asyncio.get_event_loop().time() if _has_loop() else 0.0
        per = {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        return CpuSample(per, machine_busy_seconds(), loop_time)

    @staticmethod
    def delta(a: CpuSample, b: CpuSample) -> dict[str, float]:
        """CPU seconds per process between two samples."""
        return {
            name: round(b.per_process[name] - a.per_process.get(name, 0.0), 4)
            for name in b.per_process
        }

    def total(self, pids: Iterable[int]) -> float:
        """Summed CPU seconds of some pids now."""
        return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def settle(
    pids: Iterable[int], *, max_s: float, quiet: float = 0.05, window: float = 0.3
) -> float:
    """Wait until the processes together use under `quiet` of a core (or `max_s` passed).

    Returns the seconds waited. Keeps one measurement from paying for the previous one's
    tail (closing sockets, presence expiry, GC).
    """
    pid_list = list(pids)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        c0 = sum(cpu_seconds(p) or 0.0 for p in pid_list)
        await asyncio.sleep(window)
        c1 = sum(cpu_seconds(p) or 0.0 for p in pid_list)
        waited = loop.time() - start
        if (c1 - c0) / window < quiet or waited >= max_s:
            return waited


def can_pin() -> bool:
    """Pinning needs two usable cores."""
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return False


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of `pid` to `cpus` (`taskset -a -p` where installed)."""
    taskset = shutil.which("taskset")
    if taskset is not None:
        cpu_list = ",".join(str(c) for c in sorted(cpus))
        subprocess.run(
            [taskset, "-a", "-p", "-c", cpu_list, str(pid)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def raise_nofile(wanted: int = 200_000) -> int:
    """Raise RLIMIT_NOFILE (inherited by every child) as far as allowed; the new soft limit.

    Raising the hard limit needs CAP_SYS_RESOURCE; without it the soft limit goes up to the
    hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: use the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
    return soft


async def gc_then_rss(url: str, pid: int) -> int:
    """POST a full-collection endpoint (`/debug/gc` or the reference's `/gc`), let the
    allocator settle, then the process's RSS in bytes."""

    def post() -> None:
        req = urllib.request.Request(url, data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            json.loads(resp.read())

    await asyncio.to_thread(post)
    await asyncio.sleep(0.2)
    return rss_bytes(pid) or 0


async def get_json(url: str) -> dict[str, Any]:
    """GET a JSON object (a debug endpoint)."""

    def get() -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=30) as resp:
            found: dict[str, Any] = json.loads(resp.read())
            return found

    return await asyncio.to_thread(get)


async def py_spy(
    pids: Mapping[str, int], directory: Path, label: str, seconds: float
) -> list[asyncio.subprocess.Process]:
    """Start one `py-spy record` per process for `seconds` (200 Hz, without stopping the
    process, idle samples left out): collapsed stacks in `<directory>/<label>-<name>.txt` (the
    directory exists).
    Nothing when py-spy is not installed."""
    exe = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if exe is None:
        return []
    started: list[asyncio.subprocess.Process] = []
    for name, pid in pids.items():
        args = ["record", "--nonblocking", "-r", "200", "-d", str(max(1, int(seconds)))]
        out = directory / f"{label}-{name}.txt"
        args += ["-f", "raw", "-o", str(out), "-p", str(pid)]
        started.append(
            await asyncio.create_subprocess_exec(
                exe, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    return started
