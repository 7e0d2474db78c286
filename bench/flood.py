"""`python -m bench.flood [--typing-rate N] [--seconds S] [--rounds R]`: what one user's
typing flood costs a gateway.

One gateway (with the messages, groups and users workers) and, per round, one flooder
process (`chat_testkit.flood`: `typing:start` without an ack, as fast as the socket takes
it, over the lean WebSocket path). Per round, from just before the flooder starts until
shortly before it stops (its own start-up, the handshake and the first reads included):
the gateway's CPU seconds, the typing events it handled (accepted / rate limited, from
its `/metrics`), and the parsed events held at the end of the window (its
`chat_gateway_queued_events`, and live `SioPacket` objects from `POST /debug/gc`, which
lists the 40 most numerous types: 0 when not among them). Between rounds it waits until the gateway
has let go of the flooder's socket (a paused socket notices its peer left only when a
ping goes unanswered: pings every 3 s here, 5 s to answer). The rate defaults to the
protocol's 5 typing events/s (`limits.RATE_TYPING_PER_S`); the integration tests'
stack runs 1,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.proc import cpu_seconds
from chat_contracts import limits
from chat_testkit.stack import Stack

#: The ops port's counters this reads: typing events handled, acks by status and code.
_EVENTS = 'chat_gateway_events_total{event="typing:start"}'
_ACKS = "chat_gateway_acks_total{"
_SOCKETS = 'chat_gateway_sockets{transport="websocket"}'
_QUEUED = "chat_gateway_queued_events "


def _counters(ops_url: str) -> dict[str, float]:
    with urllib.request.urlopen(ops_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith((_EVENTS, _ACKS, _SOCKETS, _QUEUED)):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _live_packets(url: str) -> int:
    request = urllib.request.Request(url + "/debug/gc", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        types: dict[str, int] = json.loads(response.read())["types"]
    return types.get("SioPacket", 0)


async def _round(stack: Stack, seconds: float, index: int) -> dict[str, Any]:
    gateway = stack.processes["gateway-a"]
    pid = gateway.proc.pid
    before = _counters(gateway.ops_url)
    cpu0 = cpu_seconds(pid) or 0.0
    started = time.monotonic()
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chat_testkit.flood", gateway.url,
        stack.token(f"flooder{index}"), str(seconds), "typing:start",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # The window ends 0.3 s before the flooder stops, so the flood is still connected
    # when its queued events are counted.
    await asyncio.sleep(max(0.0, seconds - 0.3 - (time.monotonic() - started)))
    cpu = (cpu_seconds(pid) or 0.0) - cpu0
    window = time.monotonic() - started
    queued = _counters(gateway.ops_url).get(_QUEUED.rstrip(), -1)
    packets = _live_packets(gateway.url)
    out, _ = await asyncio.wait_for(flooder.communicate(), seconds + 30)
    gone = time.monotonic()
    while _counters(gateway.ops_url).get(_SOCKETS, 0) > 0:
        if time.monotonic() - gone > 30:
            raise RuntimeError("the gateway kept the flooder's socket for 30 s")
        await asyncio.sleep(0.1)
    lingered = time.monotonic() - gone
    after = _counters(gateway.ops_url)
    handled = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    return {
        "window s": round(window, 2),
        "gateway cpu ms": round(cpu * 1000),
        "typing handled": int(handled.get(_EVENTS, 0)),
        "rate limited": int(handled.get(_ACKS + 'code="RATE_LIMITED",status="retry"}', 0)),
        "queued events": int(queued),
        "parsed events held": packets,
        "socket kept after the flooder left s": round(lingered, 1),
        "flooder": json.loads(out),
    }


async def _main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        stack = Stack(
            Path(tmp),
            gateways=1,
            workers=("messages", "groups", "users"),
            overrides={
                "CHAT_RATE_TYPING_PER_S": str(args.typing_rate),
                "CHAT_DEBUG_ENDPOINTS": "1",
                "CHAT_HEALTH_PORT": "0",
                "CHAT_PING_INTERVAL_MS": "3000",
                "CHAT_PING_TIMEOUT_MS": "5000",
                "CHAT_LOG_LEVEL": "WARNING",
            },
        )
        stack.start()
        try:
            cpus = []
            for index in range(args.rounds):
                result = await _round(stack, args.seconds, index)
                cpus.append(result["gateway cpu ms"])
                print(json.dumps(result), flush=True)
            print(
                f"typing rate {args.typing_rate}/s, {args.rounds} rounds of {args.seconds} s:"
                f" gateway CPU median {statistics.median(cpus)} ms per round"
            )
        finally:
            stack.stop()


def main() -> None:
    """Parse the options, run the rounds, print one JSON line each and the median."""
    parser = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__)
    parser.add_argument("--typing-rate", type=float, default=limits.RATE_TYPING_PER_S)
    parser.add_argument("--seconds", type=float, default=3.0, help="flood per round")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
