"""An event flood from one user is rate limited without slowing anyone else.

A bystander on the same gateway sends at a steady pace and its ack latency is measured
in alternating quiet and flood phases (so that the machine's own load drifts into both
alike); the flooder is a separate process (`chat_testkit.flood`) keeping 100 events
in flight. The p99 under flood must stay within 2x of the quiet p99, and the flooder
gets no more than its bucket.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import cmid, extra_gateway

#: Bystander pace (sends/s) and phase length (s): 2 x 2 phases of 60 samples each.
PACE_HZ = 30
PHASE_S = 2.0
ROUNDS = 2


async def _phase(client: ChatClient, peer: str, seconds: float) -> list[float]:
    """Send at `PACE_HZ` for `seconds`; each ack's latency (ms)."""
    latencies: list[float] = []
    period = 1 / PACE_HZ
    start = time.monotonic()
    tick = start
    while tick - start < seconds:
        sent = time.monotonic()
        payload = {"clientMessageId": cmid(), "targetUserId": peer, "content": "calm"}
        ack = await client.call("message:send", payload)
        assert ack["status"] == "ok", ack
        latencies.append((time.monotonic() - sent) * 1000)
        tick += period
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    return latencies


def _p(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100)[pct - 1]


def _p99(values: list[float]) -> float:
    return _p(values, 99)


async def _measure(
    stack: Stack, url: str, client: ChatClient, peer: str, uid: Callable[[str], str]
) -> tuple[list[float], list[float], list[dict[str, int]]]:
    """Alternating quiet and flooded phases: the bystander's latencies and the flood's
    counts."""
    quiet: list[float] = []
    flood: list[float] = []
    counts: list[dict[str, int]] = []
    for _ in range(ROUNDS):
        quiet += await _phase(client, peer, PHASE_S)
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chat_testkit.flood", url,
            stack.token(uid("flooder")), str(PHASE_S + 1.0),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(0.5)  # the flood is under way
        flood += await _phase(client, peer, PHASE_S)
        out, _ = await asyncio.wait_for(flooder.communicate(), 20)
        counts.append(json.loads(out))
    return quiet, flood, counts


async def test_a_flood_is_rate_limited_without_slowing_a_bystander(
    stack: Stack, uid: Callable[[str], str]
) -> None:
    """Measured twice at most: on a 2-core machine shared with other test runs (load
    average 30 seen) a p99 of 60 samples is at the mercy of the neighbours, so a second
    measurement decides; both are printed."""
    # The protocol's buckets for the flooder; the bystander stays under them (30/s
    # against a bucket of 50/s: the rule is per user, so it is not the one limited).
    with extra_gateway(
        stack,
        "gateway-flood",
        CHAT_RATE_SEND_PER_S="50",
        CHAT_RATE_SEND_BURST="50",
        CHAT_RATE_OTHER_PER_MIN="60",
    ) as url:
        calm, peer = uid("calm"), uid("peer")
        client = await ChatClient("calm").connect(url, stack.token(calm))
        try:
            await _phase(client, peer, 0.5)  # warm-up: the DM exists, caches are hot
            for attempt in (1, 2):
                quiet, flood, counts = await _measure(stack, url, client, peer, uid)
                report = _report(quiet, flood, counts)
                print(f"attempt {attempt}: {report}")
                limited = sum(c.get("retry RATE_LIMITED", 0) for c in counts)
                accepted = sum(c.get("ok", 0) for c in counts)
                assert limited > 0, report
                # The flooder got at most its bucket: burst plus refill over the phases.
                assert accepted <= ROUNDS * (50 + 50 * (PHASE_S + 1.5)), report
                if _p99(flood) <= 2 * _p99(quiet):
                    break
            else:
                raise AssertionError(f"bystander slowed twice: {report}")
        finally:
            await client.close()


def _report(quiet: list[float], flood: list[float], counts: list[dict[str, int]]) -> str:
    limited = sum(c.get("retry RATE_LIMITED", 0) for c in counts)
    accepted = sum(c.get("ok", 0) for c in counts)
    sent = sum(c.get("sent", 0) for c in counts)
    return (
        f"flood: {sent} sent, {accepted} accepted, {limited} rate limited {counts}; "
        f"bystander p99 quiet {_p99(quiet):.1f} ms, under flood {_p99(flood):.1f} ms "
        f"(p50 {statistics.median(quiet):.1f} / {statistics.median(flood):.1f} ms, "
        f"p90 {_p(quiet, 90):.1f} / {_p(flood, 90):.1f} ms)"
    )
