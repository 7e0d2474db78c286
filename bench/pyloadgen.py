"""Fallback load generator in Python (aiohttp WebSockets), for machines without Node.

It speaks the same spec, commands and JSON-line events as bench/node/loadgen.mjs, so
every metric path runs end to end (the smoke test), but it is slow, uncalibrated and
uses one source address: its numbers are not comparable and the orchestrator says so.

    python -m bench.pyloadgen <spec.json>
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt

Spec = dict[str, Any]


def emit(obj: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def now_ms() -> float:
    """Monotonic milliseconds."""
    return time.monotonic() * 1000.0


def summary(values: list[float]) -> dict[str, Any]:
    """p50/p99/p99.9/max of latencies (ms), as loadgen.mjs reports them."""
    if not values:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 3)

    return {
        "count": len(ordered),
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": sum(ordered) / len(ordered),
    }


class Counters:
    """Connection outcomes."""

    def __init__(self) -> None:
        self.connected = 0
        self.refused = 0
        self.failed = 0
        self.closed_after_connect = 0
        self.errors: dict[str, int] = {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "refused": self.refused,
            "failed": self.failed,
            "closed_after_connect": self.closed_after_connect,
            "errors": self.errors,
        }


class Conn:
    """One Socket.IO client over an aiohttp WebSocket."""

    def __init__(self, gen: Gen, url: str, auth: dict[str, Any], on_event: Any, on_ack: Any):
        self.gen = gen
        self.url = url
        self.auth = auth
        self.on_event = on_event
        self.on_ack = on_ack
        self.state = "new"
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.next_ack = 0
        self.pending: dict[int, tuple[Any, int]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> str:
        counters = self.gen.counters
        connected = asyncio.get_running_loop().create_future()
        try:
            self.ws = await self.gen.session.ws_connect(
                self.url, compress=0, timeout=aiohttp.ClientWSTimeout(ws_close=30)
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            counters.failed += 1
            key = type(exc).__name__
            counters.errors[key] = counters.errors.get(key, 0) + 1
            return "failed"
        self.reader = asyncio.create_task(self._read(connected))
        try:
            state: str = await asyncio.wait_for(connected, 30)
        except TimeoutError:
            state = "failed"
        if state == "connected":
            counters.connected += 1
        elif state == "refused":
            counters.refused += 1
        else:
            counters.failed += 1
        return state

    async def _read(self, connected: asyncio.Future[str]) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data: str = msg.data
            if data.startswith("42"):
                self.on_event(self, data)
            elif data.startswith("43"):
                self.on_ack(self, data)
            elif data.startswith("40"):
                self.state = "connected"
                if not connected.done():
                    connected.set_result("connected")
            elif data.startswith("44"):
                self.state = "refused"
                if not connected.done():
                    connected.set_result("refused")
                await self.ws.close()
            elif data == "2":
                await self.ws.send_str("3")
            elif data.startswith("0"):
                await self.ws.send_str("40" + json.dumps(self.auth))
        if self.state == "connected":
            self.gen.counters.closed_after_connect += 1
        self.state = "closed"
        if not connected.done():
            connected.set_result("failed")

    async def send(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()


class Gen:
    """The generator: sockets, commands, scenarios."""

    def __init__(self, spec: Spec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session
        self.counters = Counters()
        self.conns: list[Conn] = []
        self.run_id = os.urandom(6).hex()

    def auth_for(self, user: str, rooms: list[str]) -> dict[str, Any]:
        a = self.spec.get("auth") or {}
        if a.get("type") == "jwt":
            now = int(time.time())
            body = {
                "sub": user,
                "name": user,
                "aud": a["aud"],
                "iss": a["iss"],
                "iat": now,
                "exp": now + 3600,
            }
            return {"token": jwt.encode(body, a["secret"], algorithm="HS256")}
        return {"rooms": rooms}

    async def open_many(self, makes: list[Conn]) -> None:
        sem = asyncio.Semaphore(int(self.spec.get("concurrency", 100)))

        async def one(conn: Conn) -> None:
            async with sem:
                await conn.open()

        self.conns.extend(makes)
        await asyncio.gather(*(one(c) for c in makes))

    def open_count(self) -> int:
        return sum(1 for c in self.conns if c.state == "connected")

    async def commands(self) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.strip():
                yield json.loads(line)
        yield {"cmd": "close"}


def cpu_window() -> Any:
    t0 = time.monotonic()
    c0 = time.process_time()

    def done() -> dict[str, float]:
        wall = time.monotonic() - t0
        cpu = time.process_time() - c0
        return {"wall_s": wall, "cpu_s": cpu, "cpu_frac": cpu / wall if wall > 0 else 0.0}

    return done


async def open_loop(rate: float, count: int, send: Any) -> float:
    """`send(k, sched_ms)` for k in 0..count-1 at `rate`/s; the largest send lag (ms)."""
    t0 = now_ms()
    interval = 1000.0 / rate if rate > 0 else 0.0
    lag = 0.0
    for k in range(count):
        sched = t0 + k * interval
        wait = (sched - now_ms()) / 1000.0
        if wait > 0:
            await asyncio.sleep(wait)
        lag = max(lag, now_ms() - sched)
        await send(k, sched)
    return lag


async def run_idle(gen: Gen) -> dict[str, Any]:
    prefix = gen.spec.get("prefix", "idle-")
    points: list[dict[str, Any]] = []
    emit({"event": "ready", **gen.counters.as_dict()})
    async for cmd in gen.commands():
        if cmd["cmd"] == "close":
            break
        if cmd["cmd"] == "open":
            t0 = time.monotonic()
            start = len(gen.conns)
            makes = [
                Conn(gen, gen.spec["url"], gen.auth_for(f"{prefix}{i}", []), None, None)
                for i in range(start, cmd["total"])
            ]
            await gen.open_many(makes)
            point = {
                "event": "opened",
                "total": cmd["total"],
                "open": gen.open_count(),
                **gen.counters.as_dict(),
                "open_s": time.monotonic() - t0,
            }
            emit(point)
            points.append(point)
        elif cmd["cmd"] == "hold":
            await asyncio.sleep(cmd["seconds"])
            emit({"event": "held", "open": gen.open_count(), **gen.counters.as_dict()})
    return {"points": points}


async def run_fanout(gen: Gen) -> dict[str, Any]:
    spec = gen.spec
    members = int(spec["members"])
    step: dict[str, Any] | None = None

    def on_event(_conn: Conn, data: str) -> None:
        if step is None or not data.startswith('42["message:new"'):
            return
        payload = json.loads(data[2:])[1]
        seq = int(payload["id"]) - step["id"] * 1_000_000
        if not 0 <= seq < step["count"]:
            return
        t = time.monotonic() * 1000.0
        first, last, hits = step["first"], step["last"], step["hits"]
        if hits[seq] == 0:
            first[seq] = t
            step["sent"][seq] = float(payload["t"]) - (time.time() * 1000.0 - t)
        last[seq] = t
        hits[seq] += 1
        step["deliveries"] += 1
        if step["deliveries"] == step["expected"]:
            step["done"].set()

    prefix = spec.get("prefix", "fan-")
    makes = [
        Conn(gen, spec["url"], gen.auth_for(f"{prefix}{i}", [spec["room"]]), on_event, None)
        for i in range(members)
    ]
    await gen.open_many(makes)
    control = None
    if spec.get("trigger") == "broadcast":
        control = Conn(gen, spec["url"], gen.auth_for(f"{prefix}control", []), None, None)
        await gen.open_many([control])
    count_ok = sum(1 for c in makes if c.state == "connected")
    emit({"event": "ready", **gen.counters.as_dict(), "members": count_ok})
    steps: list[dict[str, Any]] = []
    async for cmd in gen.commands():
        if cmd["cmd"] == "close":
            break
        if cmd["cmd"] != "step":
            continue
        n = int(cmd["count"])
        step = {
            "id": cmd["id"],
            "count": n,
            "expected": n * count_ok,
            "first": [0.0] * n,
            "last": [0.0] * n,
            "sent": [0.0] * n,
            "hits": [0] * n,
            "deliveries": 0,
            "done": asyncio.Event(),
        }
        win = cpu_window()
        emit({"event": "armed", "id": cmd["id"]})
        sender: asyncio.Future[float] | None = None
        if control is not None:
            sid = cmd["id"]

            async def send(
                k: int, sched: float, c: Conn = control, sid: int = sid, pad: str = cmd["pad"]
            ) -> None:
                wall = time.time() * 1000.0 - (now_ms() - sched)
                data = {"id": sid * 1_000_000 + k, "t": wall, "pad": pad}
                await c.send(
                    '42["bench:broadcast",' + json.dumps({"room": spec["room"], "data": data}) + "]"
                )

            sender = asyncio.ensure_future(open_loop(cmd["rate"], n, send))
        timeout = n / cmd["rate"] + cmd.get("drain_ms", 3000) / 1000
        try:
            await asyncio.wait_for(step["done"].wait(), timeout)
            timed_out = False
        except TimeoutError:
            timed_out = True
        if sender is not None and not sender.done():
            sender.cancel()
        cpu = win()
        hits = step["hits"]
        spread = [step["last"][i] - step["first"][i] for i in range(n) if hits[i]]
        to_last = [step["last"][i] - step["sent"][i] for i in range(n) if hits[i]]
        result = {
            "event": "step",
            "id": cmd["id"],
            "rate": cmd["rate"],
            "timed_out": timed_out,
            **cpu,
            "messages": n,
            "members": count_ok,
            "deliveries": step["deliveries"],
            "expected_deliveries": step["expected"],
            "spread": summary(spread),
            "sched_to_first": summary([]),
            "sched_to_last": summary(to_last),
        }
        result["deliveries_per_s"] = step["deliveries"] / cpu["wall_s"]
        emit(result)
        steps.append(result)
        step = None
    return {"steps": steps}


async def run_e2e(gen: Gen) -> dict[str, Any]:
    spec = gen.spec
    rooms: list[str] = spec["rooms"]
    s = len(rooms)
    state: dict[str, Any] = {}

    def on_event(_conn: Conn, data: str) -> None:
        if not state or not data.startswith('42["message:new"'):
            return
        msg = json.loads(data[2:])[1]
        parts = str(msg.get("content", "")).split(":")
        if len(parts) != 3 or int(parts[0]) != state["id"]:
            return
        k = int(parts[1])
        if state["received"][k]:
            return
        state["received"][k] = True
        state["n_received"] += 1
        state["latency"].append(now_ms() - float(parts[2]))
        check()

    def on_ack(conn: Conn, data: str) -> None:
        i = 2
        while i < len(data) and data[i].isdigit():
            i += 1
        entry = conn.pending.pop(int(data[2:i]), None)
        if entry is None or entry[0] is not state.get("token"):
            return
        k = entry[1]
        ack = json.loads(data[i:])[0]
        state["acked"] += 1
        if ack.get("status") != "ok":
            state["ack_not_ok"] += 1
            key = f"{ack.get('status')}:{ack.get('code', '')}"
            state["ack_codes"][key] = state["ack_codes"].get(key, 0) + 1
        state["ack_latency"].append(now_ms() - (state["t0"] + k * state["interval"]))
        check()

    def check() -> None:
        n = state["count"]
        if state["sent"] == n and state["n_received"] == n and state["acked"] == n:
            state["done"].set()

    rp, sp = spec.get("receiver_prefix", "r-"), spec.get("sender_prefix", "s-")
    url_b: str = spec.get("url_b") or spec["url"]
    receivers = [
        Conn(gen, url_b, gen.auth_for(f"{rp}{i}", [rooms[i]]), on_event, None) for i in range(s)
    ]
    await gen.open_many(receivers)
    senders = [
        Conn(gen, spec["url"], gen.auth_for(f"{sp}{i}", [rooms[i]]), None, on_ack) for i in range(s)
    ]
    await gen.open_many(senders)
    emit({"event": "ready", **gen.counters.as_dict()})
    steps: list[dict[str, Any]] = []
    seq = 0
    async for cmd in gen.commands():
        if cmd["cmd"] == "close":
            break
        if cmd["cmd"] != "step":
            continue
        n = max(1, round(cmd["rate"] * cmd["duration_s"]))
        state.clear()
        state.update(
            id=cmd["id"],
            token=object(),
            count=n,
            interval=1000.0 / cmd["rate"],
            t0=0.0,
            received=[False] * n,
            n_received=0,
            sent=0,
            acked=0,
            ack_not_ok=0,
            ack_codes={},
            latency=[],
            ack_latency=[],
            done=asyncio.Event(),
        )
        win = cpu_window()
        emit({"event": "armed", "id": cmd["id"]})

        step_id = cmd["id"]

        async def send(k: int, sched: float, step_id: int = step_id) -> None:
            nonlocal seq
            if k == 0:
                state["t0"] = sched
            conn = senders[k % s]
            if conn.state != "connected":
                return
            ack_id = conn.next_ack
            conn.next_ack += 1
            conn.pending[ack_id] = (state["token"], k)
            payload = {
                "clientMessageId": f"{gen.run_id}-{step_id}-{seq}",
                "groupId": rooms[k % s],
                "type": "TEXT",
                "content": f"{step_id}:{k}:{sched:.3f}",
            }
            seq += 1
            await conn.send(f"42{ack_id}" + json.dumps(["message:send", payload]))
            state["sent"] += 1

        lag = await open_loop(cmd["rate"], n, send)
        check()
        try:
            await asyncio.wait_for(state["done"].wait(), cmd.get("loss_ms", 5000) / 1000)
            timed_out = False
        except TimeoutError:
            timed_out = True
        cpu = win()
        result = {
            "event": "step",
            "id": cmd["id"],
            "rate": cmd["rate"],
            "duration_s": cmd["duration_s"],
            "timed_out": timed_out,
            **cpu,
            "sent": state["sent"],
            "scheduled": n,
            "received": state["n_received"],
            "lost": n - state["n_received"],
            "duplicates": 0,
            "stray": 0,
            "acked": state["acked"],
            "ack_not_ok": state["ack_not_ok"],
            "ack_codes": state["ack_codes"],
            "max_send_lag_ms": lag,
            "latency": summary(state["latency"]),
            "ack_latency": summary(state["ack_latency"]),
        }
        emit(result)
        steps.append(result)
    return {"steps": steps}


async def main(spec: Spec) -> int:
    """Run the spec's scenario; the exit status."""
    scenario = {"idle": run_idle, "fanout": run_fanout, "e2e": run_e2e}.get(spec["scenario"])
    if scenario is None:
        emit({"event": "error", "error": f"unknown scenario {spec['scenario']}"})
        return 1
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        gen = Gen(spec, session)
        win = cpu_window()
        try:
            body = await asyncio.wait_for(scenario(gen), spec.get("max_s", 900))
        except TimeoutError:
            emit({"event": "error", "error": "max_s exceeded"})
            return 3
        total = win()
        opened = gen.open_count()
        await asyncio.gather(*(c.close() for c in gen.conns), return_exceptions=True)
    emit(
        {
            "event": "result",
            "scenario": spec["scenario"],
            **gen.counters.as_dict(),
            "open_at_close": opened,
            "total_cpu": total,
            **body,
        }
    )
    return 0


if __name__ == "__main__":
    with open(sys.argv[1]) as spec_file:
        loaded: Spec = json.load(spec_file)
    raise SystemExit(asyncio.run(main(loaded)))
