"""An event flood from one user is rate limited without slowing anyone else.

A bystander on the same gateway sends at a steady pace and its ack latency is measured
in alternating quiet and flood phases (so that the machine's own load drifts into both
alike); the flooder is a separate process (`chat_testkit.flood`) keeping 100 events
in flight. The p99 under flood must stay within 2x of the quiet p99, and the flooder
gets no more than its bucket. A flood of events without an ack (typing) does not slow
the bystander either, and the flooding socket holds no more parsed events than its
inbox takes.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from chat_contracts import limits
from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.conftest import cmid, extra_gateway
from tests.integration.test_ops import sample

#: Bystander pace (sends/s) and phase length (s): 2 x 2 phases of 60 samples each.
PACE_HZ = 30
PHASE_S = 2.0
ROUNDS = 2
#: A bystander's latencies in quiet and in flooded phases (ms), and the flood's counts.
Measured = tuple[list[float], list[float], list[dict[str, int]]]
#: The protocol's typing bucket (the integration stack runs 1,000/s for its own bursts).
PROTOCOL_TYPING = {"CHAT_RATE_TYPING_PER_S": str(limits.RATE_TYPING_PER_S)}
#: Events a socket's inbox holds before its reading pauses (`socket_max_in_flight`).
IN_FLIGHT = 32
#: The flooder at the lowest CPU priority: on a 2-core machine its own burst (~75,000
#: typing events written in ~1 s until TCP pushes back, while the gateway spends 30-50
#: ms per phase) took a core from the bystander's processes and tripled the bystander's
#: p99 in 2 of 5 measurements; a real flooder does not run on the server's machine.
FLOODER = ("nice", "-n", "19", sys.executable, "-m", "chat_testkit.flood")


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


def _cpu_s(pid: int) -> float:
    """CPU time (user + system, s) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    stack: Stack,
    url: str,
    client: ChatClient,
    peer: str,
    uid: Callable[[str], str],
    event: str = "message:send",
    gateway_pid: int | None = None,
) -> Measured:
    """Alternating quiet and flooded phases: the bystander's latencies and the flood's
    counts (with `gateway_pid`, its CPU seconds in each kind of phase as "cpu quiet"
    and "cpu flood", in milliseconds)."""
    quiet: list[float] = []
    flood: list[float] = []
    counts: list[dict[str, int]] = []
    for _ in range(ROUNDS):
        cpu = _cpu_s(gateway_pid) if gateway_pid else 0.0
        quiet += await _phase(client, peer, PHASE_S)
        cpu_quiet = _cpu_s(gateway_pid) - cpu if gateway_pid else 0.0
        flooder = await asyncio.create_subprocess_exec(
            *FLOODER, url, stack.token(uid("flooder")), str(PHASE_S + 1.0), event,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(0.5)  # the flood is under way
        cpu = _cpu_s(gateway_pid) if gateway_pid else 0.0
        flood += await _phase(client, peer, PHASE_S)
        cpu_flood = _cpu_s(gateway_pid) - cpu if gateway_pid else 0.0
        out, _ = await asyncio.wait_for(flooder.communicate(), 20)
        counts.append(json.loads(out))
        if gateway_pid:
            counts[-1].update(
                {"cpu quiet": round(cpu_quiet * 1000), "cpu flood": round(cpu_flood * 1000)}
            )
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

            def held_to_its_bucket(counts: list[dict[str, int]], report: str) -> None:
                limited = sum(c.get("retry RATE_LIMITED", 0) for c in counts)
                accepted = sum(c.get("ok", 0) for c in counts)
                assert limited > 0, report
                # The flooder got at most its bucket: burst plus refill over the phases.
                assert accepted <= ROUNDS * (50 + 50 * (PHASE_S + 1.5)), report

            await _at_most_twice(
                lambda: _measure(stack, url, client, peer, uid), held_to_its_bucket
            )
        finally:
            await client.close()


async def test_a_typing_flood_is_paced_and_does_not_slow_a_bystander(
    stack: Stack, uid: Callable[[str], str]
) -> None:
    """`typing:start` without an ack, as fast as the socket takes it, against the
    protocol's 5 typing events/s: the bystander's p99 stays within 2x (measured twice
    at most, as above). Printed per phase: the flooder's sends, whether its last send
    blocked (TCP pushing back), and the gateway's CPU (ms) in quiet and flooded phases.
    Not asserted (a shared machine): ~10-60 ms of CPU per 2 s flooded phase. It was
    ~0.4-0.5 s while this gateway inherited the stack's 1,000 typing events/s: that was
    the cost of ~1,000 accepted typing events a second, not of parsing."""
    with extra_gateway(stack, "gateway-typing-flood", **PROTOCOL_TYPING) as url:
        pid = stack.processes["gateway-typing-flood"].proc.pid
        calm, peer = uid("calm"), uid("peer")
        client = await ChatClient("calm").connect(url, stack.token(calm))
        try:
            await _phase(client, peer, 0.5)

            def sent(counts: list[dict[str, int]], report: str) -> None:
                assert all(c.get("sent", 0) > 0 for c in counts), report

            await _at_most_twice(
                lambda: _measure(stack, url, client, peer, uid, "typing:start", pid), sent
            )
        finally:
            await client.close()


async def test_a_typing_flood_holds_no_more_parsed_events_than_its_inbox(
    stack: Stack, uid: Callable[[str], str]
) -> None:
    """Once a typing flood is rate limited its socket is paused with a full inbox, and
    what it sent beyond that stays unparsed bytes (before: every event of each read was
    parsed and held, ~4,800 per 256 KiB read). Read from the gateway's
    `chat_gateway_queued_events` while the flood goes on."""
    name = "gateway-typing-held"
    env = {"CHAT_HEALTH_PORT": "0", "CHAT_SOCKET_MAX_IN_FLIGHT": str(IN_FLIGHT)}
    with extra_gateway(stack, name, **PROTOCOL_TYPING, **env) as url:
        ops = stack.processes[name].ops_url
        flooder = await asyncio.create_subprocess_exec(
            *FLOODER, url, stack.token(uid("flooder")), "4", "typing:start",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                deadline = time.monotonic() + 10
                while True:
                    async with http.get(ops + "/metrics") as resp:
                        text = await resp.text()
                    # Past its bucket (5 + 5/s) the flood waits `retryAfter` per event:
                    # by now its inbox is full and its reading paused.
                    limited = sample(
                        text, "chat_gateway_acks_total", status="retry", code="RATE_LIMITED"
                    )
                    if limited >= 2:
                        break
                    assert time.monotonic() < deadline, "the flood was never rate limited"
                    await asyncio.sleep(0.05)
        finally:
            out, _ = await asyncio.wait_for(flooder.communicate(), 20)
        counts = json.loads(out)
        queued = sample(text, "chat_gateway_queued_events")
        print(f"flood {counts}; parsed events queued on the gateway: {queued:.0f}")
        assert counts.get("sent", 0) > 10 * IN_FLIGHT, counts
        # Between the inbox's low water (where parsing resumes) and its size.
        assert IN_FLIGHT // 2 <= queued <= IN_FLIGHT, queued


async def _at_most_twice(
    measure: Callable[[], Awaitable[Measured]],
    check: Callable[[list[dict[str, int]], str], None],
) -> None:
    """Each measurement's flood counts must pass `check`; one of at most two must leave
    the bystander's p99 under flood within 2x of its quiet p99 (both are printed)."""
    report = ""
    for attempt in (1, 2):
        quiet, flood, counts = await measure()
        report = _report(quiet, flood, counts)
        print(f"attempt {attempt}: {report}")
        check(counts, report)
        if _p99(flood) <= 2 * _p99(quiet):
            return
    raise AssertionError(f"bystander slowed twice: {report}")


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
