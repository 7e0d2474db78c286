"""Our system under test: chat_testkit's Stack (nats, redis, gateways, workers as real
processes on free ports), set up directly over NATS."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from bench.proc import gc_then_rss, get_json, pin
from chat_contracts import subjects
from chat_contracts.bus import Actor, Fanout
from chat_contracts.client import GroupCreate, MessageSend
from chat_runtime.bus import Bus, encode
from chat_testkit.stack import AUDIENCE, ISSUER, Stack

#: Ready lines come from the `chat.lifecycle` logger, shown at any level; WARNING keeps
#: every process quiet during measurements.
LOG_LEVEL = "WARNING"

OVERRIDES = {
    "CHAT_RATE_SEND_PER_S": "100000",
    "CHAT_RATE_SEND_BURST": "100000",
    "CHAT_RATE_OTHER_PER_MIN": "10000000",
    "CHAT_RATE_TYPING_PER_S": "100000",
    "CHAT_DEBUG_ENDPOINTS": "1",
    "CHAT_LOG_LEVEL": LOG_LEVEL,
    # Offline is announced right after the last socket of a user leaves, instead of 10 s
    # later in the middle of the next measurement (same code path, shorter timer).
    "CHAT_PRESENCE_GRACE_MS": "200",
    # The generator opens 10,000 sockets from 32 loopback addresses at ~350/s: the
    # per-address admission limits are for the open internet, not for this.
    "CHAT_HANDSHAKES_PER_ADDRESS_PER_S": "0",
    "CHAT_MAX_PENDING_PER_ADDRESS": "10000",
    "CHAT_MAX_PENDING_CONNECTIONS": "20000",
}

#: `BENCH_CHAT_X=v` in the bench's environment sets `CHAT_X=v` in every process of ours
#: (an A/B of a setting without a code change; the stack passes no `CHAT_*` through).
PASS_PREFIX = "BENCH_"


def settings_from_env() -> dict[str, str]:
    """The `CHAT_*` settings passed through as `BENCH_CHAT_*`."""
    return {
        key[len(PASS_PREFIX) :]: value
        for key, value in os.environ.items()
        if key.startswith(PASS_PREFIX + "CHAT_")
    }


_group_result = msgspec.msgpack.Decoder(dict[str, Any])


class Ours:
    """One stack of our processes, started for one measurement."""

    def __init__(
        self,
        workdir: Path,
        *,
        gateways: int,
        cpus: set[int] | None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.cpus = cpus
        self.stack = Stack(
            workdir,
            gateways=gateways,
            workers=("messages", "groups", "users"),
            overrides={**OVERRIDES, **settings_from_env(), **(extra_env or {})},
        )
        self.bus: Bus | None = None

    async def start(self) -> Ours:
        """Start every process (in a thread: the testkit blocks), pin them, connect a bus."""
        await asyncio.to_thread(self._start_unpinned)
        self._pin()
        assert self.stack.nats is not None
        self.bus = await Bus.connect(self.stack.nats.url, name="bench")
        return self

    def _start_unpinned(self) -> None:
        # Children inherit the starting thread's affinity: start on every core (imports
        # are the slow part), pin once they are ready.
        own = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            self.stack.start()
        finally:
            os.sched_setaffinity(0, own)

    def _pin(self) -> None:
        if self.cpus is not None:
            for pid in self.pids().values():
                pin(pid, self.cpus)

    async def add_messages_worker(self) -> None:
        """A second messages worker (same queue group)."""
        proc = self.stack.add("messages", "messages-2")
        await asyncio.to_thread(proc.wait_ready)
        self._pin()

    def pids(self) -> dict[str, int]:
        """Every process of ours by name: gateways, workers, nats, redis."""
        out = {name: p.proc.pid for name, p in self.stack.processes.items()}
        if self.stack.nats is not None:
            out["nats"] = self.stack.nats.proc.pid
        if self.stack.redis is not None:
            out["redis"] = self.stack.redis.proc.pid
        return out

    def python_pids(self) -> dict[str, int]:
        """Our Python processes by name: gateways and workers."""
        return {name: p.proc.pid for name, p in self.stack.processes.items()}

    def gateway_pid(self, index: int = 0) -> int:
        """Process id of gateway number `index`."""
        return self.stack.processes[f"gateway-{'abcdefgh'[index]}"].proc.pid

    def ws_url(self, index: int = 0) -> str:
        """Engine.IO WebSocket URL of gateway `index`."""
        base = self.stack.gateway_url(index).replace("http://", "ws://")
        return f"{base}/socket.io/?EIO=4&transport=websocket"

    def auth(self) -> dict[str, Any]:
        """What the load generator needs to mint HS256 tokens the gateways accept."""
        return {"type": "jwt", "secret": self.stack.secret, "aud": AUDIENCE, "iss": ISSUER}

    async def gc_rss(self, index: int = 0) -> int:
        """`POST /debug/gc` on the gateway, then its RSS in bytes."""
        url = self.stack.gateway_url(index) + "/debug/gc"
        return await gc_then_rss(url, self.gateway_pid(index))

    async def command_stats(self, index: int = 0) -> dict[str, int]:
        """`GET /debug/stats` on the gateway: client commands and requests sent so far."""
        url = self.stack.gateway_url(index) + "/debug/stats"
        return await get_json(url)

    async def create_group(self, owner: str, members: list[str], name: str) -> str:
        """A group made by `owner` with `members`, straight through the groups worker."""
        assert self.bus is not None
        reply = await self.bus.command(
            subjects.GROUPS,
            "create",
            Actor(user_id=owner, name=owner),
            GroupCreate(name=name, member_ids=members),
            timeout_ms=30_000,
        )
        if reply.status != "ok" or reply.result is None:
            raise RuntimeError(f"group create failed: {reply.status} {reply.code} {reply.error}")
        return str(_group_result.decode(reply.result)["group"]["id"])

    async def send_round(
        self, rooms: list[str], senders: list[str], count: int, seqs: dict[int, list[int]]
    ) -> None:
        """`count` messages into each room from its sender (in order per room, rooms
        concurrently); the seq of each goes into `seqs[room index]`."""
        assert self.bus is not None
        bus = self.bus
        sem = asyncio.Semaphore(64)

        async def one(j: int) -> None:
            async with sem:
                for _ in range(count):
                    payload = MessageSend(
                        group_id=rooms[j], client_message_id=uuid.uuid4().hex, content="storm"
                    )
                    actor = Actor(user_id=senders[j], name=senders[j])
                    reply = await bus.command(
                        subjects.MESSAGES, "send", actor, payload, timeout_ms=30_000
                    )
                    if reply.status != "ok" or reply.result is None:
                        raise RuntimeError(f"send failed: {reply.status} {reply.code}")
                    seqs[j].append(int(_group_result.decode(reply.result)["message"]["seq"]))

        await asyncio.gather(*(one(j) for j in range(len(rooms))))

    async def create_pair_groups(self, senders: list[str], receivers: list[str]) -> list[str]:
        """Group i = (sender i as owner, receiver i), 32 creations in flight."""
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> str:
            async with sem:
                return await self.create_group(senders[i], [receivers[i]], f"bench pair {i}")

        return list(await asyncio.gather(*(one(i) for i in range(len(senders)))))

    async def publish_fanout(
        self, group_id: str, step_id: int, rate: float, count: int, pad: str
    ) -> float:
        """Open-loop publishes of `message:new` on the room subject; the max send lag (ms)."""
        assert self.bus is not None
        subject = subjects.room(group_id)
        loop = asyncio.get_running_loop()
        interval = 1.0 / rate
        t0 = loop.time()
        wall0 = time.time() * 1000.0
        max_lag = 0.0
        k = 0
        while k < count:
            now = loop.time()
            while k < count and t0 + k * interval <= now:
                sched_ms = wall0 + k * interval * 1000.0
                data = b'{"id":%d,"t":%.3f,"pad":"%s"}' % (
                    step_id * 1_000_000 + k,
                    sched_ms,
                    pad.encode(),
                )
                await self.bus.publish(subject, encode(Fanout(event="message:new", data=data)))
                max_lag = max(max_lag, (now - (t0 + k * interval)) * 1000.0)
                k += 1
            if k < count:
                await asyncio.sleep(max(0.0, t0 + k * interval - loop.time()))
        await self.bus.flush()
        return max_lag

    def log_sizes(self) -> dict[str, int]:
        """Bytes each process logged (a noisy log would cost CPU under test)."""
        return {
            name: (p.log.stat().st_size if p.log.exists() else 0)
            for name, p in self.stack.processes.items()
        }

    async def stop(self) -> dict[str, int | None]:
        """Close the bus, stop every process; exit statuses."""
        if self.bus is not None:
            await self.bus.close()
            self.bus = None
        return await asyncio.to_thread(self.stack.stop)
