"""A steady mixed load from many clients, and what it did to the processes serving it.

`Soak.run()` drives N users (one socket each, on the gateways in turn) through a
mix of actions chosen by weight, each always valid for its user so that any error ack
other than a rate limit is a fault: sends to a group or a DM, reads, typing, presence,
reactions added and removed, edits of the user's own last message, group changes
(an owner adds and removes its group's spare member), history and sync, reconnects.
Every second it samples the RSS of every process of the stack. `SoakResult` fits the
RSS slope after warm-up, splits ack latency into windows, and writes a Markdown report.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from chat_runtime.memory import rss_kib

EMOJIS = ["👍", "🎉", "❤️", "😂", "👨‍👩‍👧", "🇺🇳"]
#: Action weights (per cent of all actions).
MIX = {
    "send": 35,
    "read": 10,
    "typing": 15,
    "presence": 5,
    "reaction": 10,
    "edit": 5,
    "group": 5,
    "history": 5,
    "sync": 5,
    "reconnect": 5,
}

#: Objects that only the cycle collector frees, made after the warm-up, per ack after
#: it. The services' GC settings (`chat_runtime.worker.run`) let such garbage pile up
#: for the life of the process, so per-connection objects must be freed by reference
#: counting. With nats-py's subscription cycles (11 objects per unsubscribe, since
#: `fanout._release` none) the short run's gateways made 0.65-0.74 per ack, and the
#: 10-minute soak's grew ~2.4 MiB/min; without them, 0 in the short run.
GARBAGE_PER_ACK_BOUND = 0.05


@dataclass
class User:
    """One soak user: its socket, chats, and what it can act on."""

    user_id: str
    token: str
    gateway: int
    sio: socketio.AsyncClient | None = None
    chats: list[dict[str, str]] = field(default_factory=list)
    #: Last message received per chat (for reads and reactions).
    last_seen: dict[str, str] = field(default_factory=dict)
    #: The user's own last message and the chat it is in (for edits).
    own_last: tuple[str, dict[str, str]] | None = None
    #: The group this user owns and the spare member it adds and removes.
    owned: tuple[str, str, bool] | None = None
    reactions: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class SoakResult:
    """Samples and counts of one run."""

    clients: int
    seconds: float
    warmup_s: float
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, str, float]] = field(default_factory=list)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    #: Per gateway, what a full collection at the end of the run found unreachable, by
    #: type (`/debug/gc?garbage=1`; another at the end of the warm-up freed what came
    #: before): memory only the cycle collector frees.
    garbage: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def acks_after_warmup(self) -> int:
        """Acknowledged client actions after the warm-up."""
        return sum(1 for t, _, _ in self.latencies if t >= self.warmup_s)

    def slope_kib_per_min(self, name: str) -> float:
        """Least-squares slope of a process's RSS after warm-up (KiB per minute)."""
        points = [(t, kib) for t, kib in self.rss[name] if t >= self.warmup_s]
        if len(points) < 3:
            return 0.0
        xs = [t for t, _ in points]
        ys = [float(k) for _, k in points]
        return statistics.linear_regression(xs, ys).slope * 60

    def windows(self, count: int = 5) -> list[tuple[float, float, float, int]]:
        """(start s, p50 ms, p99 ms, acks) of the ack latencies after warm-up, in `count`
        equal windows."""
        span = (self.seconds - self.warmup_s) / count
        out = []
        for i in range(count):
            lo = self.warmup_s + i * span
            values = [ms for t, _, ms in self.latencies if lo <= t < lo + span]
            if len(values) >= 2:
                q = statistics.quantiles(values, n=100)
                out.append((lo, statistics.median(values), q[98], len(values)))
        return out

    def checks(self, slope_bound_kib_per_min: float) -> list[tuple[str, bool]]:
        """What the run must show (issue 14), each with whether it held: no error ack
        but rate limits, every process's fitted RSS slope after warm-up under the bound,
        each gateway's garbage cycles made after warm-up under `GARBAGE_PER_ACK_BOUND`
        per ack after it, latency steady (the last window's p99 within 3x + 50 ms of the
        first's)."""
        out = [(f"no error ack but rate limits ({len(self.errors)} seen)", not self.errors)]
        for name in sorted(self.rss):
            slope = self.slope_kib_per_min(name)
            text = f"{name}: RSS slope {slope:.0f} KiB/min < {slope_bound_kib_per_min:.0f}"
            out.append((text, slope < slope_bound_kib_per_min))
        for name, types in sorted(self.garbage.items()):
            found = sum(types.values())
            per_ack = found / max(self.acks_after_warmup, 1)
            text = (
                f"{name}: garbage cycles after warm-up {found} objects, {per_ack:.4f} "
                f"per ack < {GARBAGE_PER_ACK_BOUND}"
            )
            out.append((text, per_ack < GARBAGE_PER_ACK_BOUND))
        windows = self.windows()
        if len(windows) < 3:
            out.append((f"latency steady: only {len(windows)} windows with acks", False))
        else:
            first, last = windows[0][2], windows[-1][2]
            text = f"latency steady: last p99 {last:.1f} ms <= 3 x first ({first:.1f} ms) + 50"
            out.append((text, last <= 3 * first + 50))
        return out

    def markdown(self, title: str, command: str, slope_bound_kib_per_min: float) -> str:
        """The report: the verdict on `checks`, then the figures behind it."""
        checks = self.checks(slope_bound_kib_per_min)
        lines = [
            f"# {title}",
            "",
            f"`{command}`: {self.clients} clients for {self.seconds:.0f} s (warm-up "
            f"{self.warmup_s:.0f} s), mixed actions by weight {MIX}.",
            "",
            "## Verdict: " + ("passed" if all(ok for _, ok in checks) else "FAILED"),
            "",
            "| check | held |",
            "|---|---|",
            *(f"| {text} | {'yes' if ok else 'NO'} |" for text, ok in checks),
            "",
            "## Acks",
            "",
            "| outcome | count |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in sorted(self.outcomes.items())),
            "",
            "## Ack latency after warm-up",
            "",
            "| window from (s) | acks | p50 (ms) | p99 (ms) |",
            "|---|---|---|---|",
            *(f"| {lo:.0f} | {n} | {p50:.1f} | {p99:.1f} |" for lo, p50, p99, n in self.windows()),
            "",
            "## RSS after warm-up (fitted slope)",
            "",
            "| process | first (MiB) | last (MiB) | slope (KiB/min) |",
            "|---|---|---|---|",
        ]
        for name, points in sorted(self.rss.items()):
            after = [k for t, k in points if t >= self.warmup_s] or [0]
            lines.append(
                f"| {name} | {after[0] / 1024:.1f} | {after[-1] / 1024:.1f} | "
                f"{self.slope_kib_per_min(name):.0f} |"
            )
        if self.garbage:
            lines += [
                "",
                "## Garbage cycles made after warm-up (a full collection's finds, by type)",
                "",
                "| gateway | objects | most numerous |",
                "|---|---|---|",
            ]
            for name, types in sorted(self.garbage.items()):
                top = ", ".join(f"{t} {n}" for t, n in Counter(types).most_common(6))
                lines.append(f"| {name} | {sum(types.values())} | {top or '-'} |")
        if self.errors:
            lines += ["", "## Error acks (first 20)", "", *(f"- {e}" for e in self.errors[:20])]
        return "\n".join(lines) + "\n"


class Soak:
    """The load and the sampler."""

    def __init__(
        self,
        urls: Callable[[], list[str]],
        token: Callable[[str], str],
        pids: Callable[[], dict[str, int]],
        clients: int,
        actions_per_s: float,
        tag: str = "soak",
        seed: int = 11,
    ) -> None:
        self.urls = urls
        self.pids = pids
        self.rng = random.Random(seed)
        self.users = [
            User(f"{tag}-{i}", token(f"{tag}-{i}"), gateway=i % 2) for i in range(clients)
        ]
        self.period_s = clients / actions_per_s
        self._started = 0.0
        self._running = False

    async def _connect(self, user: User) -> None:
        sio = socketio.AsyncClient(reconnection=False)

        async def on_new(data: Any) -> None:
            chat = data.get("groupId") or data.get("conversationId")
            if chat:
                user.last_seen[chat] = data["id"]

        sio.on("message:new", on_new)
        urls = self.urls()
        for attempt in range(20):
            url = urls[(user.gateway + attempt) % len(urls)]
            try:
                await sio.connect(
                    url, auth={"token": user.token}, transports=["websocket"], wait_timeout=10
                )
                user.sio = sio
                return
            except (socketio.exceptions.ConnectionError, OSError):
                await asyncio.sleep(0.2 * (attempt + 1))
                urls = self.urls()
        raise RuntimeError(f"{user.user_id} could not connect")

    async def _setup_call(self, user: User, event: str, payload: dict[str, Any]) -> Any:
        """A setup command, reconnecting and retrying when the socket dropped or the
        ack did not come (a loaded machine: 2,000 clients in one process)."""
        for attempt in range(4):
            if user.sio is None or not user.sio.connected:
                await self._connect(user)
            assert user.sio is not None
            try:
                ack = await user.sio.call(event, payload, timeout=30)
            except socketio.exceptions.SocketIOError:
                continue
            if ack.get("status") == "ok":
                return ack
            await asyncio.sleep(ack.get("retryAfter", 500) / 1000 * (attempt + 1))
        raise RuntimeError(f"setup {event} of {user.user_id} failed")

    async def setup(self) -> None:
        """Connect everyone (50 at a time), make groups of ten and one DM per pair."""
        for i in range(0, len(self.users), 50):
            await asyncio.gather(*(self._connect(u) for u in self.users[i : i + 50]))

        async def group(start: int) -> None:
            owner, members = self.users[start], self.users[start + 1 : start + 9]
            spare = self.users[start + 9]
            payload = {"name": "soak", "memberIds": [m.user_id for m in members]}
            ack = await self._setup_call(owner, "group:create", payload)
            group_id = ack["group"]["id"]
            owner.owned = (group_id, spare.user_id, False)
            for user in (owner, *members):
                user.chats.append({"groupId": group_id})

        async def dm(a: User, b: User) -> None:
            payload = {
                "clientMessageId": f"soak-dm-{a.user_id}",
                "targetUserId": b.user_id,
                "content": "hi",
            }
            ack = await self._setup_call(a, "message:send", payload)
            conversation = {"conversationId": ack["message"]["conversationId"]}
            a.chats.append(conversation)
            b.chats.append(conversation)

        starts = list(range(0, len(self.users) - 9, 10))
        for i in range(0, len(starts), 20):
            await asyncio.gather(*(group(s) for s in starts[i : i + 20]))
        pairs = list(zip(self.users[0::2], self.users[1::2], strict=False))
        for i in range(0, len(pairs), 50):
            await asyncio.gather(*(dm(a, b) for a, b in pairs[i : i + 50]))

    async def run(self, seconds: float, warmup_s: float) -> SoakResult:
        """Drive the mix for `seconds`; sample RSS every second."""
        result = SoakResult(len(self.users), seconds, warmup_s)
        self._started = time.monotonic()
        self._running = True
        sampler = asyncio.ensure_future(self._sample(result))
        loops = [asyncio.ensure_future(self._loop(u, result)) for u in self.users]
        await asyncio.sleep(seconds)
        self._running = False
        await asyncio.gather(*loops)
        sampler.cancel()
        return result

    async def close(self) -> None:
        """Disconnect everyone."""
        await asyncio.gather(*(u.sio.disconnect() for u in self.users if u.sio is not None))

    async def _sample(self, result: SoakResult) -> None:
        while True:
            now = time.monotonic() - self._started
            for name, pid in self.pids().items():
                try:
                    result.rss[name].append((now, rss_kib(pid)))
                except (OSError, RuntimeError):
                    continue
            await asyncio.sleep(1.0)

    async def _loop(self, user: User, result: SoakResult) -> None:
        rng = random.Random(user.user_id)
        await asyncio.sleep(rng.random() * self.period_s)
        actions, weights = list(MIX), list(MIX.values())
        while self._running:
            action = rng.choices(actions, weights)[0]
            try:
                await self._act(user, action, rng, result)
            except (socketio.exceptions.SocketIOError, OSError, RuntimeError) as exc:
                result.outcomes[f"{action}: {type(exc).__name__}"] += 1
                result.errors.append(f"{user.user_id} {action}: {exc!r}")
                if user.sio is None or not user.sio.connected:
                    await self._connect(user)
            await asyncio.sleep(self.period_s * (0.5 + rng.random()))

    async def _call(
        self, user: User, action: str, event: str, payload: dict[str, Any], result: SoakResult
    ) -> dict[str, Any]:
        assert user.sio is not None
        started = time.monotonic()
        ack: dict[str, Any] = await user.sio.call(event, payload, timeout=10)
        elapsed = time.monotonic()
        status = f"{ack.get('status')} {ack.get('code', '')}".strip()
        result.outcomes[f"{action}: {status}"] += 1
        if ack.get("status") == "ok":
            result.latencies.append((elapsed - self._started, action, (elapsed - started) * 1000))
        elif ack.get("code") != "RATE_LIMITED":
            result.errors.append(f"{user.user_id} {event} {payload}: {ack}")
        return ack

    async def _act(self, user: User, action: str, rng: random.Random, r: SoakResult) -> None:
        if user.sio is None or not user.sio.connected:
            await self._connect(user)
        chat = rng.choice(user.chats) if user.chats else None
        chat_id = (chat or {}).get("groupId") or (chat or {}).get("conversationId")
        if action == "send" and chat:
            payload = {"clientMessageId": uuid.uuid4().hex, "content": "soak", **chat}
            ack = await self._call(user, action, "message:send", payload, r)
            if ack.get("status") == "ok":
                user.own_last = (ack["message"]["id"], chat)
        elif action == "read" and chat_id and chat_id in user.last_seen:
            target = {"groupId": chat_id} if "groupId" in (chat or {}) else {}
            read: dict[str, Any] = {"messageIds": [user.last_seen[chat_id]], **target}
            await self._call(user, action, "message:read", read, r)
        elif action == "typing" and chat:
            assert user.sio is not None
            await user.sio.emit("typing:start", chat)
            await user.sio.emit("typing:stop", chat)
            r.outcomes["typing: sent"] += 1
        elif action == "presence":
            status = rng.choice(["online", "away", "busy"])
            await self._call(user, action, "presence:set", {"status": status}, r)
        elif action == "reaction" and chat_id and chat_id in user.last_seen:
            key = (user.last_seen[chat_id], rng.choice(EMOJIS))
            event = "message:reaction:remove" if key in user.reactions else "message:reaction:add"
            ack = await self._call(user, action, event, {"messageId": key[0], "emoji": key[1]}, r)
            if ack.get("status") == "ok":
                user.reactions.symmetric_difference_update({key})
        elif action == "edit" and user.own_last is not None:
            payload = {"messageId": user.own_last[0], "content": f"edited {rng.random()}"}
            await self._call(user, action, "message:edit", payload, r)
        elif action == "group" and user.owned is not None:
            group, spare, added = user.owned
            if added:
                payload = {"groupId": group, "userId": spare}
                ack = await self._call(user, action, "group:member:remove", payload, r)
            else:
                payload = {"groupId": group, "userId": spare}
                ack = await self._call(user, action, "group:member:add", payload, r)
            if ack.get("status") == "ok":
                user.owned = (group, spare, not added)
        elif action == "history" and chat:
            await self._call(user, action, "messages:history", {**chat, "limit": 20}, r)
        elif action == "sync":
            await self._call(user, action, "sync", {}, r)
        elif action == "reconnect":
            assert user.sio is not None
            await user.sio.disconnect()
            await self._connect(user)
            r.outcomes["reconnect: done"] += 1
        else:
            await self._call(user, "groups", "groups:list", {}, r)
