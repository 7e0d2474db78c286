"""Steady chat traffic from many clients over several gateways, and the audit of what
became of every message (the reliability tests' source of truth).

Each `Member` is one user with one socket. It sends to its chats at a pace, keeps every
acknowledged message and every one that was not (answered `retry`/`error`, or lost with
its connection), and records every `message:new` it receives, per connection. When its
socket drops it reconnects to whichever gateway answers (the test's list of URLs is
read at each attempt, so a restarted gateway is found on its new port).

After the traffic stops, `settle()` retries every unacknowledged message with its own
`clientMessageId` until it is acknowledged, then `sync`s every member from zero; the
`audit()` compares all of it with the rows of the messages store.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio

#: An ack not back in this long is a hang (the gateway's deadline is 5 s by default).
ACK_DEADLINE_S = 8.0


@dataclass
class Sent:
    """One message as its sender knows it."""

    cmid: str
    chat: str
    target: dict[str, str]
    content: str
    message_id: str | None = None
    seq: int | None = None


@dataclass
class Member:
    """One user with one socket, sending to its chats."""

    user_id: str
    token: str
    chats: dict[str, dict[str, str]] = field(default_factory=dict)
    sio: socketio.AsyncClient | None = None
    gateway: str = ""
    #: Every `message:new`, per connection (index = connection number).
    live: list[list[dict[str, Any]]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    acked: dict[str, Sent] = field(default_factory=dict)
    pending: dict[str, Sent] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    connects: int = 0
    acked_on_retry: int = 0
    #: How many of each other event arrived (group:member:added...).
    others: Counter[str] = field(default_factory=Counter)
    #: When (monotonic) each of its connections dropped.
    disconnects: list[float] = field(default_factory=list)

    def chat_of(self, target: dict[str, str]) -> str:
        return target.get("groupId") or target.get("conversationId") or ""


class Traffic:
    """Members, their sending loops, reconnection and the final audit."""

    def __init__(
        self,
        urls: Callable[[], list[str]],
        members: list[Member],
        pace_hz: float = 4.0,
        seed: int = 7,
    ) -> None:
        self.urls = urls
        self.members = members
        self.pace_hz = pace_hz
        self.random = random.Random(seed)
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []
        self.hangs: list[str] = []

    # --- connections ---------------------------------------------------------------

    async def connect(self, member: Member, prefer: int | None = None) -> None:
        """Connect `member` to a gateway that answers (the preferred one first)."""
        urls = self.urls()
        order = list(range(len(urls)))
        if prefer is not None:
            order.sort(key=lambda i: (i - prefer) % len(urls))
        else:
            self.random.shuffle(order)
        last: Exception | None = None
        for _ in range(40):
            for index in order:
                sio = self._client(member)
                try:
                    await sio.connect(
                        urls[index],
                        auth={"token": member.token},
                        transports=["websocket"],
                        wait_timeout=5,
                    )
                except (socketio.exceptions.ConnectionError, OSError, TimeoutError) as exc:
                    last = exc
                    await sio.disconnect()
                    continue
                member.sio, member.gateway = sio, urls[index]
                member.connects += 1
                return
            await asyncio.sleep(0.25)
            urls = self.urls()
            order = [i for i in order if i < len(urls)] or list(range(len(urls)))
        raise RuntimeError(f"{member.user_id} found no gateway: {last}")

    def _client(self, member: Member) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False)
        received: list[dict[str, Any]] = []
        member.live.append(received)

        async def on_new(data: Any) -> None:
            received.append(data)

        async def on_batch(data: Any) -> None:
            member.batches.append(data)

        async def on_other(event: str, data: Any = None) -> None:
            member.others[event] += 1

        async def on_disconnect(reason: Any = None) -> None:
            member.disconnects.append(time.monotonic())

        sio.on("disconnect", on_disconnect)
        sio.on("message:new", on_new)
        sio.on("message:batch", on_batch)
        sio.on("*", on_other)
        return sio

    async def ensure_connected(self, member: Member) -> socketio.AsyncClient:
        """The member's socket, reconnected first if it dropped."""
        if member.sio is None or not member.sio.connected:
            if member.sio is not None:
                await member.sio.disconnect()
            await self.connect(member)
        assert member.sio is not None
        return member.sio

    # --- sending -------------------------------------------------------------------

    async def send(self, member: Member, sent: Sent, retry_count: int | None = None) -> bool:
        """One `message:send`; True when acknowledged."""
        payload: dict[str, Any] = {
            "clientMessageId": sent.cmid,
            "content": sent.content,
            **sent.target,
        }
        if retry_count is not None:
            payload["retryCount"] = retry_count
        started = time.monotonic()
        try:
            sio = await self.ensure_connected(member)
            ack = await sio.call("message:send", payload, timeout=ACK_DEADLINE_S)
        except socketio.exceptions.TimeoutError:
            connected = member.sio is not None and member.sio.connected
            if connected:
                self.hangs.append(f"{member.user_id} {sent.cmid}: no ack in {ACK_DEADLINE_S} s")
            member.outcomes["lost with its connection" if not connected else "hang"] += 1
            member.pending[sent.cmid] = sent
            return False
        except (socketio.exceptions.SocketIOError, RuntimeError, OSError) as exc:
            member.outcomes[f"not sent: {type(exc).__name__}"] += 1
            member.pending[sent.cmid] = sent
            return False
        status, code = ack.get("status"), ack.get("code", "")
        member.outcomes[f"{status} {code}".strip()] += 1
        if status == "ok":
            member.latencies_ms.append((time.monotonic() - started) * 1000)
            message = ack["message"]
            sent.message_id, sent.seq = message["id"], message["seq"]
            sent.chat = sent.chat or message.get("groupId") or message.get("conversationId", "")
            member.acked[sent.cmid] = sent
            if member.pending.pop(sent.cmid, None) is not None:
                member.acked_on_retry += 1
            return True
        member.pending[sent.cmid] = sent
        return False

    async def _loop(self, member: Member) -> None:
        period = 1 / self.pace_hz
        rnd = random.Random(member.user_id)
        await asyncio.sleep(rnd.random() * period)
        targets = list(member.chats.values())
        while self._running:
            target = rnd.choice(targets)
            sent = Sent(
                cmid=uuid.uuid4().hex,
                chat=member.chat_of(target),
                target=target,
                content=f"from {member.user_id}",
            )
            await self.send(member, sent)
            await asyncio.sleep(period * (0.5 + rnd.random()))

    def start(self) -> None:
        """Every member starts sending."""
        self._running = True
        self._tasks = [asyncio.ensure_future(self._loop(m)) for m in self.members]

    async def stop(self) -> None:
        """Stop sending; messages in flight finish (acked or pending)."""
        self._running = False
        await asyncio.gather(*self._tasks)

    # --- after the fault -----------------------------------------------------------

    async def settle(self, attempts: int = 30) -> None:
        """Retry every unacknowledged message with its own clientMessageId until acked."""

        async def retry_all(member: Member) -> None:
            for attempt in itertools.count(1):
                if not member.pending or attempt > attempts:
                    return
                for sent in list(member.pending.values()):
                    if not await self.send(member, sent, retry_count=attempt):
                        await asyncio.sleep(0.3)

        await asyncio.gather(*(retry_all(m) for m in self.members))

    async def sync_all(self) -> None:
        """Every member syncs from zero; returns when each chat's batches reach the
        `lastSeq` the ack promised."""

        async def sync(member: Member) -> None:
            member.batches.clear()
            sio = await self.ensure_connected(member)
            ack = await sio.call("sync", {}, timeout=ACK_DEADLINE_S)
            assert ack["status"] == "ok", ack
            want = {c.get("groupId") or c.get("conversationId"): c["lastSeq"] for c in ack["chats"]}
            deadline = time.monotonic() + 10
            while True:
                have: dict[str, int] = defaultdict(int)
                for batch in member.batches:
                    chat = batch.get("groupId") or batch.get("conversationId") or ""
                    for message in batch["messages"]:
                        have[chat] = max(have[chat], message["seq"])
                if all(have[c] >= seq for c, seq in want.items()):
                    return
                assert time.monotonic() < deadline, f"{member.user_id}: batches {have} < {want}"
                await asyncio.sleep(0.05)

        await asyncio.gather(*(sync(m) for m in self.members))

    async def close(self) -> None:
        """Disconnect every member."""
        for member in self.members:
            if member.sio is not None:
                await member.sio.disconnect()


def stored_messages(db: Path) -> list[tuple[str, int, str, str, str]]:
    """`(chat_id, seq, id, sender_id, client_message_id)` of every stored message."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT chat_id, seq, id, sender_id, client_message_id FROM messages"
        ).fetchall()
    finally:
        conn.close()
    return [(str(c), int(q), str(i), str(u), str(k)) for c, q, i, u, k in rows]


@dataclass
class Audit:
    """What became of every message; `problems` empty = nothing lost, nothing doubled."""

    sent: int = 0
    acked_first_time: int = 0
    acked_on_retry: int = 0
    stored: int = 0
    live_deliveries: int = 0
    live_out_of_order: int = 0
    recovered_by_sync: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.sent} messages sent, {self.acked_first_time} acked at once, "
            f"{self.acked_on_retry} on a retry with the same clientMessageId, "
            f"{self.stored} stored; {self.live_deliveries} live deliveries "
            f"({self.live_out_of_order} out of seq order), {self.recovered_by_sync} "
            f"recovered by sync; acks {dict(self.outcomes)}"
        )


def audit(traffic: Traffic, db: Path) -> Audit:
    """Compare what every member sent, was told and received with the store's rows.

    Holds when: every sent clientMessageId is stored exactly once (none lost, none
    doubled), with the id and seq its ack gave; every chat's seqs are 1..n without a
    gap; no socket received a message twice; and every member, from its own sends,
    live events and sync batches together, holds exactly its chats' stored messages.
    """
    result = Audit()
    rows = stored_messages(db)
    members = traffic.members
    chats: set[str] = set()
    for member in members:
        chats.update(member.chat_of(t) for t in member.chats.values())
    by_chat: dict[str, dict[int, str]] = defaultdict(dict)
    by_cmid: dict[tuple[str, str], list[tuple[str, int, str]]] = defaultdict(list)
    for chat_id, seq, mid, sender, cmid in rows:
        if chat_id not in chats:
            continue
        by_chat[chat_id][seq] = mid
        by_cmid[(sender, cmid)].append((chat_id, seq, mid))
    result.stored = sum(len(v) for v in by_chat.values())
    for chat_id, seqs in by_chat.items():
        if sorted(seqs) != list(range(1, len(seqs) + 1)):
            result.problems.append(f"{chat_id}: seqs with a gap {sorted(seqs)[:10]}...")
    sent_keys: set[tuple[str, str]] = set()
    for member in members:
        result.outcomes.update(member.outcomes)
        for sent in [*member.acked.values(), *member.pending.values()]:
            result.sent += 1
            key = (member.user_id, sent.cmid)
            sent_keys.add(key)
            found = by_cmid.get(key, [])
            if sent.cmid in member.pending:
                result.problems.append(f"{key}: never acknowledged after the retries")
                continue
            if len(found) != 1:
                result.problems.append(f"{key}: stored {len(found)} times")
            elif found[0][2] != sent.message_id or found[0][1] != sent.seq:
                result.problems.append(f"{key}: ack {sent.message_id}/{sent.seq} != {found[0]}")
        result.acked_on_retry += member.acked_on_retry
    stray = set(by_cmid) - sent_keys
    if stray:
        result.problems.append(f"stored but never sent by a member: {sorted(stray)[:5]}")
    result.acked_first_time = result.sent - result.acked_on_retry
    for member in members:
        mine = {member.chat_of(t) for t in member.chats.values()}
        view: dict[str, set[str]] = defaultdict(set)
        for sent in member.acked.values():
            view[sent.chat].add(sent.message_id or "")
        for connection in member.live:
            seen: set[str] = set()
            last_seq: dict[str, int] = {}
            for message in connection:
                result.live_deliveries += 1
                chat = message.get("groupId") or message.get("conversationId") or ""
                if message["id"] in seen:
                    result.problems.append(f"{member.user_id}: {message['id']} delivered twice")
                seen.add(message["id"])
                if message["seq"] < last_seq.get(chat, 0):
                    result.live_out_of_order += 1
                last_seq[chat] = message["seq"]
                view[chat].add(message["id"])
        live_view = {c: set(ids) for c, ids in view.items()}
        batch_seq: dict[str, int] = {}
        for batch in member.batches:
            chat = batch.get("groupId") or batch.get("conversationId") or ""
            for message in batch["messages"]:
                if message["seq"] <= batch_seq.get(chat, 0):
                    result.problems.append(f"{member.user_id}: sync of {chat} not in seq order")
                batch_seq[chat] = message["seq"]
                view[chat].add(message["id"])
        for chat in mine:
            expected = set(by_chat.get(chat, {}).values())
            missing = expected - view[chat]
            extra = view[chat] - expected
            if missing or extra:
                result.problems.append(
                    f"{member.user_id} in {chat}: missing {len(missing)}, extra {len(extra)}"
                )
            result.recovered_by_sync += len(expected - live_view.get(chat, set()))
    return result
