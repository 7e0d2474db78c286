"""`python -m bench [--smoke] [--only METRIC] [--reps N]`: run, print the table, save JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import report
from bench.metrics import (
    OURS,
    REFERENCE,
    Env,
    calibrate,
    close_pool,
    run_connect,
    run_e2e,
    run_fanout,
    run_idle,
    run_scaling,
    run_storm,
)
from bench.proc import can_pin, raise_nofile
from bench.runners import NODE_DIR, NodeUnavailable, ensure_node_modules
from bench.sizes import FULL, SMOKE, Sizes

RESULTS_DIR = Path(__file__).resolve().parent / "results"
METRICS = ("idle", "fanout", "e2e", "ramp", "scaling", "connect", "storm")
ALIASES = {
    "1": "idle",
    "2": "fanout",
    "3": "e2e",
    "4": "ramp",
    "5": "scaling",
    "6": "connect",
    "7": "storm",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load benchmark: our gateways and workers against a stock Node socket.io 4.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repetition (seconds; for CI)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[*METRICS, *ALIASES],
        help="run only this metric (repeatable): idle|1, fanout|2, e2e|3, ramp|4, scaling|5,"
        " connect|6, storm|7",
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3; smoke 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--no-reference", action="store_true", help="measure ours only (skip Node socket.io)"
    )
    parser.add_argument(
        "--side", choices=[OURS, REFERENCE], help="measure one side only (no ratios)"
    )
    parser.add_argument(
        "--no-node",
        action="store_true",
        help="act as if Node were missing: no reference, the Python fallback generator",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directories (logs)")
    parser.add_argument("--out", type=Path, help="write the JSON here (default bench/results/)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy every Python process of ours during metric 3's measured step into this"
        " directory (collapsed stacks, one file per process and run)",
    )
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError):  # no /proc: the model stays unknown
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    node_version = None
    node = shutil.which("node")
    if node:
        node_version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    versions: dict[str, str] = {}
    for pkg in ("socket.io", "ws", "bufferutil"):
        with contextlib.suppress(OSError, ValueError, KeyError):  # not installed
            meta = json.loads((NODE_DIR / "node_modules" / pkg / "package.json").read_text())
            versions[pkg] = meta["version"]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_version,
        "node_packages": versions,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def revision() -> str:
    """The commit measured, and whether services/ or libs/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "services", "libs"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" (services/libs modified)" if dirty else "")


def _log(message: str) -> None:
    print(message, flush=True)


async def run(args: argparse.Namespace) -> int:
    """The whole benchmark; the process exit status."""
    sizes: Sizes = SMOKE if args.smoke else FULL
    reps = args.reps or sizes.reps
    selected = {ALIASES.get(m, m) for m in (args.only or METRICS)}
    started_at = time.monotonic()
    nofile = raise_nofile()
    notes: list[str] = []

    for binary, why in (
        ("redis-server", "redis-server is not installed (Debian package redis-server)"),
    ):
        if shutil.which(binary) is None:
            print(f"bench: {why}", file=sys.stderr)
            return 2

    server_cpus: set[int] | None = None
    generator_cpus: set[int] | None = None
    if not args.no_pin and can_pin():
        server_cpus, generator_cpus = {1}, {0}
        os.sched_setaffinity(0, generator_cpus)  # children inherit; servers are re-pinned
        pinning = "servers under test on core 1; load generator and orchestrator on core 0"
    else:
        pinning = "none (" + ("--no-pin" if args.no_pin else "fewer than 2 cores") + ")"

    node: str | None = None
    ref_reason: str | None = None
    try:
        if args.no_node:
            raise NodeUnavailable("--no-node")
        node = ensure_node_modules()
    except NodeUnavailable as exc:
        ref_reason = f"reference skipped: {exc}"
        notes.append(
            f"{ref_reason}; the load generator is the Python fallback (bench/pyloadgen.py),"
            " which is not calibrated: its numbers are not comparable"
        )
    if args.no_reference and ref_reason is None:
        ref_reason = "reference skipped: --no-reference"
    if ref_reason:
        _log(f"bench: {ref_reason}")

    mongo_url = os.environ.get("CHAT_MONGODB_URL")
    mongo_reason = (
        None if mongo_url else "MongoDB is not available here (no Docker; CHAT_MONGODB_URL unset)"
    )
    if mongo_reason and "e2e" in selected:
        _log(f"bench: {mongo_reason}: the MongoDB variant of metric 3 is skipped")

    root = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    env = Env(sizes, root, node, server_cpus, generator_cpus, _log, share=sizes.share_servers)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        env.profile = args.profile
    host = machine()
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench " + " ".join(sys.argv[1:] if args is not None else []),
        "sizes": sizes.name,
        "reps": reps,
        "metrics": sorted(selected),
        "pinning": pinning,
        "nofile": nofile,
        "generator": "node loadgen.mjs" if node else "python fallback",
        "machine": host,
        "revision": revision(),
    }
    _log(
        f"bench: {sizes.name} run, {reps} repetition(s), metrics {', '.join(sorted(selected))};"
        f" {host['nproc']} x {host['cpu_model']}; pinning: {pinning};"
        f" RLIMIT_NOFILE {nofile}"
    )

    calibration: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = []
    failures = 0
    if node is not None:
        try:
            calibration = await calibrate(env)
            _log(
                f"bench: calibration: the generator receives"
                f" {calibration['ceiling_deliveries_per_s'] / 1e3:,.0f}k deliveries/s over"
                f" {calibration['sockets']:,} sockets at {calibration['cpu_frac']:.0%} of its core"
            )
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            failures += 1
            _log(f"bench: calibration FAILED: {exc}")
            traceback.print_exc()

    async def one(label: str, coro: Any) -> None:
        nonlocal failures
        t0 = time.monotonic()
        _log(f"bench: {label} ...")
        try:
            result = await coro
        except Exception as exc:  # noqa: BLE001 - one failed run does not end the benchmark
            failures += 1
            _log(f"bench: {label} FAILED: {exc}")
            traceback.print_exc()
            metric, side, rep = label.split()[:3]
            runs.append({"metric": metric, "side": side, "rep": int(rep[1:]), "error": str(exc)})
            return
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        runs.append(result)
        _log(f"bench: {label} done in {result['elapsed_s']:.0f} s")

    sides_all = [OURS] if ref_reason else [OURS, REFERENCE]
    if args.side:
        sides_all = [s for s in sides_all if s == args.side]
    for rep in range(reps):
        # A/B alternation: ours first on even repetitions, the reference first on odd ones.
        sides = sides_all if rep % 2 == 0 else list(reversed(sides_all))
        if "idle" in selected:
            for side in sides:
                await one(f"idle {side} r{rep}", run_idle(env, side, rep))
        if "fanout" in selected:
            for side in sides:
                await one(f"fanout {side} r{rep}", run_fanout(env, side, rep))
        if "e2e" in selected or "ramp" in selected:
            for side in sides:
                await one(f"e2e {side} r{rep}", run_e2e(env, side, rep, ramp="ramp" in selected))
            if mongo_url and "e2e" in selected:
                extra = {
                    "CHAT_STORE": "mongo",
                    "CHAT_MONGODB_URL": mongo_url,
                    "CHAT_MONGODB_DB": f"chat_bench_{os.getpid()}_{rep}",
                }
                await one(
                    f"e2e-mongo {OURS} r{rep}",
                    run_e2e(env, OURS, rep, ramp=False, extra_env=extra),
                )
        if "scaling" in selected:
            await one(f"scaling {OURS} r{rep}", run_scaling(env, rep))
        if "connect" in selected:
            for side in sides:
                await one(f"connect {side} r{rep}", run_connect(env, side, rep))
        # Last: it SIGTERMs gateway A (the smoke run's shared stack ends with it).
        if "storm" in selected and OURS in sides:
            if node is None:
                reason = "skipped: the reconnect storm needs the Node load generator"
                runs.append({"metric": "storm", "side": OURS, "rep": rep, "skipped": reason})
            else:
                await one(f"storm {OURS} r{rep}", run_storm(env, rep))
        await close_pool(env)

    shown = {
        "idle": "1",
        "fanout": "2",
        "e2e": "3",
        "ramp": "4",
        "scaling": "5",
        "connect": "6",
        "storm": "7",
    }
    keys = {shown[m] for m in selected}
    rows = [r for r in report.summarize(runs, ref_reason, mongo_reason) if r.key[0] in keys]
    refused = report.refusals(runs)
    peaks = report.generator_peaks(runs)
    foreign = report.foreign_load(runs)
    elapsed = time.monotonic() - started_at
    meta["elapsed_s"] = round(elapsed, 1)

    out_path = args.out or RESULTS_DIR / (
        dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{sizes.name}.json"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if foreign > 0.15:
        notes.append(
            f"other processes on this machine used up to {foreign:.2f} cores during a"
            " measurement: numbers may be disturbed"
        )
    document = {
        "meta": meta,
        "calibration": calibration,
        "rows": report.rows_json(rows),
        "refusals": refused,
        "generator_peaks": peaks,
        "foreign_cores_peak": foreign,
        "notes": notes,
        "runs": runs,
    }
    out_path.write_text(json.dumps(document, indent=1, default=str))

    print()
    print(
        f"## Benchmark ({sizes.name}, {reps} rep{'s' if reps > 1 else ''}, medians) —"
        f" {meta['date']}, {host['nproc']} x {host['cpu_model']}"
    )
    print()
    print(f"Code: {meta['revision']}. Pinning: {pinning}. Generator: {meta['generator']}.")
    if calibration:
        print(
            f"Calibration: the generator's own receive ceiling against trivial.mjs is"
            f" {calibration['ceiling_deliveries_per_s'] / 1e3:,.0f}k deliveries/s"
            f" ({calibration['sockets']:,} sockets, {calibration['cpu_frac']:.0%} of its core)."
        )
    else:
        print("Calibration: not run (no Node).")
    peak_text = ", ".join(f"{k} {v:.0%}" for k, v in sorted(peaks.items())) or "—"
    limit = sizes.generator_limit
    print(
        f"Generator CPU peaks: {peak_text}"
        + (f" (limit {limit:.0%}: steps above it are refused)" if limit else " (not enforced)")
    )
    print()
    print(report.markdown(rows))
    print()
    if refused:
        print("REFUSED (generator above 70 % of its core; excluded from the medians):")
        for line in refused:
            print(f"- {line}")
    for note in notes:
        print(f"Note: {note}")
    if mongo_reason and "e2e" in selected:
        print(f"Note: {mongo_reason}; metric 3 ran on SQLite only.")
    print(f"Full results: {out_path} (took {elapsed:.0f} s)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"Run directories kept under {root}")
    if failures:
        print(f"bench: {failures} run(s) failed", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    # our own NATS connection logs its orderly close as a warning: not news here
    logging.getLogger("chat_runtime").setLevel(logging.ERROR)
    return asyncio.run(run(args))
