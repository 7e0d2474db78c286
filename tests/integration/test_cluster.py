"""The product on a 3-node NATS cluster and a Redis with Sentinel: fan-out across
routes, the join race, the Redis primary killed, a NATS node killed.

Its own stack: three nats-server nodes (routes on loopback, clustered JetStream), three
gateways (gateway-a on node 1, -b on node 2, -c on node 3) and the workers spread over
the nodes round robin (messages on 1, groups on 2, users on 3, calls on 1...). Every
process has all three URLs, its own node first, and fails over to the next when its
node dies. Redis is a primary, a replica and three sentinels; every process finds the
primary through the sentinels.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.calls.conftest import OFFER
from tests.integration.conftest import Connect, cmid, make_group, serve

NODES = 3
#: Joins per kind in the default run (two kinds: member added, group created); the
#: `soak` run does `SOAK_JOINS` of each (`./taskw soak`).
JOINS = 100
SOAK_JOINS = int(os.environ.get("CHAT_SOAK_JOINS", "2000"))
#: Short deadlines, so that a request lost with a node costs the test little time.
ACK_TIMEOUT_MS = 2_000
#: Sends each client keeps in flight.
IN_FLIGHT = 4
#: Each lane pauses this long after an ack (at most 1,200 messages/s in all) ...
SEND_PAUSE_S = 0.01
#: ... and each client sends at most this many.
BUDGET = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Overrides the suite's single-server stack for this module (see the docstring)."""
    yield from serve(
        Stack(
            workdir=tmp_path_factory.mktemp("cluster"),
            gateways=NODES,
            nats_nodes=NODES,
            redis_sentinel=True,
            overrides={
                # The loops below send far faster than a person.
                "CHAT_RATE_OTHER_PER_MIN": "600000",
                "CHAT_RATE_SEND_PER_S": "10000",
                "CHAT_RATE_SEND_BURST": "10000",
                "CHAT_RATE_GROUP_CREATE_PER_MIN": "600000",
                "CHAT_RATE_SYNC_PER_MIN": "600000",
                "CHAT_ACK_TIMEOUT_MS": str(ACK_TIMEOUT_MS),
                # The messages worker's groups lookup must give up before the gateway does.
                "CHAT_GROUPS_TIMEOUT_MS": str(ACK_TIMEOUT_MS // 2),
            },
        )
    )


def nats_client_name(process: str) -> str:
    """The name a process gives its NATS connection."""
    return f"gateway-{process}" if process.startswith("gateway-") else process


def test_processes_are_spread_over_the_nodes(stack: Stack) -> None:
    assert stack.cluster is not None
    where = {name: stack.cluster.node_of(nats_client_name(name)) for name in stack.processes}
    assert where == stack.node_of
    assert {where[f"gateway-{g}"] for g in "abc"} == {0, 1, 2}


async def test_dm_and_group_messages_cross_the_routes(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    alice_1 = await connect(alice, gateway=0)  # node 1
    alice_2 = await connect(alice, gateway=1)  # node 2: the sender's other socket
    bob_3 = await connect(bob, gateway=2)  # node 3
    carol_3 = await connect(carol, gateway=2)

    # A new DM (its first message travels on the user subjects), then the next one (on
    # the room subject, which gateway-c subscribed to on another node than the worker's).
    for n in range(2):
        ack = await alice_1.call(
            "message:send", {"clientMessageId": cmid(), "targetUserId": bob, "content": f"d{n}"}
        )
        assert ack["status"] == "ok", ack
        for socket in (bob_3, alice_2):
            event = await socket.wait_for("message:new")
            assert (event["id"], event["content"]) == (ack["message"]["id"], f"d{n}")
    await alice_1.assert_silent("message:new", window=0.2)

    group = await make_group(alice_1, bob, carol)
    ack = await alice_1.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "g"}
    )
    assert ack["status"] == "ok", ack
    for socket in (bob_3, carol_3, alice_2):
        event = await socket.wait_for("message:new")
        assert (event["id"], event["groupId"]) == (ack["message"]["id"], group)
        await socket.assert_silent("message:new", window=0.2)


async def test_a_command_is_answered_by_a_worker_on_another_node(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    assert stack.cluster is not None
    groups_node = stack.cluster.node_of("groups")
    messages_node = stack.cluster.node_of("messages")
    gateway = next(
        g
        for g in range(NODES)
        if stack.cluster.node_of(f"gateway-gateway-{'abc'[g]}") not in (groups_node, messages_node)
    )
    alice, bob = uid("alice"), uid("bob")
    alice_x = await connect(alice, gateway=gateway)
    group = await make_group(alice_x, bob, name="far")
    listed = await alice_x.call("groups:list")
    assert [g["id"] for g in listed["groups"]] == [group]
    sent = await alice_x.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "x"}
    )
    history = await alice_x.call("messages:history", {"groupId": group})
    assert [m["id"] for m in history["messages"]] == [sent["message"]["id"]]


async def _join_race(
    connect: Connect, uid: Callable[[str], str], joins: int
) -> dict[str, list[int]]:
    """`joins` member additions and `joins` group creations, each followed at once by
    a message from another node; the rounds whose message the new member missed."""
    owner, member = uid("owner"), uid("member")
    owner_1 = await connect(owner, gateway=0)  # node 1, with the messages worker
    member_3 = await connect(member, gateway=2)  # node 3; groups' worker is on node 2
    missed: dict[str, list[int]] = {"member:add": [], "group:create": []}

    async def next_message_arrives(group: str, n: int, kind: str) -> None:
        ack = await owner_1.call(
            "message:send", {"clientMessageId": cmid(), "groupId": group, "content": f"{n}"}
        )
        assert ack["status"] == "ok", ack
        try:
            event = await member_3.wait_for(
                "message:new", lambda e: e["id"] == ack["message"]["id"], timeout=2.0
            )
        except AssertionError:
            missed[kind].append(n)
        else:
            assert event["groupId"] == group

    room = await make_group(owner_1, name="revolving")
    for n in range(joins):
        add = await owner_1.call("group:member:add", {"groupId": room, "userId": member})
        assert add["status"] == "ok", add
        await next_message_arrives(room, n, "member:add")
        gone = await owner_1.call("group:member:remove", {"groupId": room, "userId": member})
        assert gone["status"] == "ok", gone
        await member_3.wait_for("group:member:removed")
    for n in range(joins):
        group = await make_group(owner_1, member, name=f"new {n}")
        await next_message_arrives(group, n, "group:create")
    member_3.clear()
    return missed


async def test_a_new_member_gets_the_very_next_room_message_from_another_node(
    connect: Connect, uid: Callable[[str], str]
) -> None:
    missed = await _join_race(connect, uid, JOINS)
    assert missed == {"member:add": [], "group:create": []}


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_soak_join_race(connect: Connect, uid: Callable[[str], str]) -> None:
    missed = await _join_race(connect, uid, SOAK_JOINS)
    assert missed == {"member:add": [], "group:create": []}


class Sender:
    """One client sending numbered messages through one gateway, resending the same
    `clientMessageId` after a `retry` ack, and recording every ack it got."""

    def __init__(self, client: ChatClient, group: str, label: str) -> None:
        self.client = client
        self.group = group
        self.label = label
        #: clientMessageId -> (message id, seq) of every `ok` ack.
        self.acked: dict[str, tuple[str, int]] = {}
        #: (monotonic time the send started, time of its `ok` ack) per acked message.
        self.timeline: list[tuple[float, float]] = []
        self.retries: list[str] = []
        self.hangs = 0
        self.stop = False

    async def run(self) -> None:
        """`IN_FLIGHT` sends at a time, so that some are in flight whenever a node dies."""
        await asyncio.gather(*(self._loop(lane) for lane in range(IN_FLIGHT)))

    async def _loop(self, lane: int) -> None:
        n = 0
        # At most `BUDGET` each: `sync` sends back the newest 1,000 messages of a chat.
        while not self.stop and len(self.acked) < BUDGET:
            n += 1
            message_id = cmid()
            started = time.monotonic()
            while True:
                try:
                    # Above the gateway's ack deadline: no ack by then is a hang.
                    ack: dict[str, Any] = await self.client.call(
                        "message:send",
                        {
                            "clientMessageId": message_id,
                            "groupId": self.group,
                            "content": f"{lane}.{n}",
                        },
                        timeout=ACK_TIMEOUT_MS / 1000 + 5,
                    )
                except TimeoutError:
                    self.hangs += 1
                    continue
                if ack["status"] == "ok":
                    self.acked[message_id] = (ack["message"]["id"], ack["message"]["seq"])
                    self.timeline.append((started, time.monotonic()))
                    await asyncio.sleep(SEND_PAUSE_S)
                    break
                assert ack["status"] == "retry", ack
                self.retries.append(ack["code"])
                await asyncio.sleep(min(ack["retryAfter"], 1000) / 1000)

    def acked_after(self, moment: float) -> int:
        return sum(1 for started, _ in self.timeline if started > moment)

    def slowest_across(self, moment: float) -> float:
        """Seconds the slowest send in flight at `moment` took to its `ok` ack."""
        return max(
            (done - started for started, done in self.timeline if started <= moment < done),
            default=0.0,
        )

    def first_ok_after(self, moment: float) -> float:
        """Seconds from `moment` to the first ack of a send started after it."""
        return min(done for started, done in self.timeline if started > moment) - moment


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        await asyncio.sleep(0.02)


async def test_the_redis_primary_killed_mid_stream_fails_over_without_a_crash(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    assert stack.sentinel is not None
    redis_set = stack.sentinel
    names = [uid(n) for n in ("ann", "ben", "cat", "dan")]
    sockets = [await connect(name, gateway=g) for g, name in enumerate(names[:3])]
    group = await make_group(sockets[0], *names[1:])
    senders = [Sender(s, group, f"via gateway-{'abc'[i]}") for i, s in enumerate(sockets)]
    tasks = [asyncio.ensure_future(s.run()) for s in senders]
    try:
        await _until(lambda: all(len(s.acked) >= 10 for s in senders), 20, "10 acks each")
        killed_at = time.monotonic()
        redis_set.kill_primary()
        await asyncio.get_running_loop().run_in_executor(None, redis_set.wait_failover)
        promoted_at = time.monotonic()
        # Sends spend rate-limit tokens leased before the kill (ratelimit.py), so they go
        # on during the failover and a sender may use up its budget before the promotion.
        await _until(
            lambda: all(
                s.acked_after(promoted_at) >= 10 or len(s.acked) >= BUDGET for s in senders
            ),
            30,
            "10 acks after",
        )
    finally:
        for sender in senders:
            sender.stop = True
        await asyncio.gather(*tasks)

    recovery = {s.label: round(s.first_ok_after(killed_at), 3) for s in senders}
    retries = [code for s in senders for code in s.retries]
    print(
        f"\nredis primary killed: replica promoted after {promoted_at - killed_at:.3f} s; "
        f"first ack of a send started after the kill {recovery} s; "
        f"retry acks {len(retries)} ({set(retries)})"
    )
    assert all(s.hangs == 0 for s in senders), [s.hangs for s in senders]
    assert set(retries) <= {"UNAVAILABLE"}
    # Nothing crashed.
    assert {n: p.proc.poll() for n, p in stack.processes.items() if p.proc.poll() is not None} == {}

    new_primary = redis_set.replica
    # Presence: connecting works again, and the members online before the kill still
    # count as online (replicated, and each gateway re-leases its users every third of
    # the lease); the new socket's lease is on the new primary.
    late = await connect(names[3], gateway=1)
    assert new_primary.ask("EXISTS", f"pr:c:{names[3]}") == 1
    # Rate limits live on the new primary: a user's first send after the failover takes
    # its first block of tokens there (the senders above may still spend blocks leased
    # before the kill: ratelimit.py).
    sent = await late.call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "after"}
    )
    assert sent["status"] == "ok", sent
    assert new_primary.ask("EXISTS", f"rl:send:{names[3]}") == 1
    page = await late.call("presence:query", {"groupId": group})
    assert page["status"] == "ok", page
    assert sorted(page["onlineUserIds"]) == sorted(names)
    # Call state goes to the new primary too.
    offer = await sockets[0].call(
        "call:offer", {"targetUserId": names[1], "offer": OFFER, "callType": "audio"}
    )
    assert offer["status"] == "ok", offer
    assert (await sockets[1].wait_for("call:incoming"))["callId"] == offer["callId"]
    assert await sockets[1].call("call:end", {"callId": offer["callId"]}) == {"status": "ok"}


async def test_a_node_killed_mid_stream_loses_and_doubles_nothing(
    stack: Stack, connect: Connect, uid: Callable[[str], str]
) -> None:
    """Runs last: it leaves the cluster one node short."""
    assert stack.cluster is not None
    cluster = stack.cluster
    victim = 0  # node 1: gateway-a and the messages worker (it stores every message)
    names = [uid(n) for n in ("ann", "ben", "cat", "reader")]
    sockets = [await connect(name, gateway=g) for g, name in enumerate(names[:3])]
    watcher = await connect(names[3], gateway=victim)  # receives through the dying node
    group = await make_group(sockets[0], *names[1:])
    await watcher.wait_for("group:member:added", lambda e: e["userId"] == names[3])
    senders = [Sender(s, group, f"via gateway-{'abc'[i]}") for i, s in enumerate(sockets)]
    tasks = [asyncio.ensure_future(s.run()) for s in senders]
    try:
        await _until(lambda: all(len(s.acked) >= 10 for s in senders), 20, "10 acks each")
        killed_at = time.monotonic()
        cluster.kill(victim)
        # Every process attached to the dead node moves to another one.
        moved = [name for name, node in stack.node_of.items() if node == victim]
        reconnected: dict[str, float] = {}

        def all_moved() -> bool:
            for name in moved:
                if name not in reconnected and cluster.node_of(nats_client_name(name)) is not None:
                    reconnected[name] = time.monotonic() - killed_at
            return len(reconnected) == len(moved)

        await _until(all_moved, 20, f"{moved} reconnected")
        await _until(
            lambda: all(s.acked_after(killed_at) >= 10 for s in senders), 30, "10 acks after"
        )
    finally:
        for sender in senders:
            sender.stop = True
        await asyncio.gather(*tasks)

    recovery = {s.label: round(s.first_ok_after(killed_at), 3) for s in senders}
    in_flight = {s.label: round(s.slowest_across(killed_at), 3) for s in senders}
    reconnected = {name: round(s, 3) for name, s in reconnected.items()}
    print(
        f"\nnode {victim + 1} killed: processes reconnected after {reconnected} s; "
        f"first ack after the kill {recovery} s; slowest send in flight at the kill "
        f"{in_flight} s; retry acks "
        f"{sum(len(s.retries) for s in senders)} ({set().union(*(s.retries for s in senders))})"
    )
    assert all(s.hangs == 0 for s in senders), [s.hangs for s in senders]
    assert {code for s in senders for code in s.retries} <= {"UNAVAILABLE"}

    # Live fan-out works again through the node that took over the dead one's clients.
    last = await sockets[0].call(
        "message:send", {"clientMessageId": cmid(), "groupId": group, "content": "after"}
    )
    await watcher.wait_for("message:new", lambda e: e["id"] == last["message"]["id"])

    # A client that missed everything catches up with `sync`: every acknowledged message
    # exactly once, seqs 1..n without a gap.
    catching_up = await connect(names[3], gateway=2)
    synced = await catching_up.call("sync", {"since": [{"groupId": group, "seq": 0}]})
    assert synced["status"] == "ok", synced
    (chat,) = [c for c in synced["chats"] if c.get("groupId") == group]
    batches = await catching_up.wait_count("message:batch", -(-chat["lastSeq"] // 200))
    got = [m for batch in batches for m in batch["messages"]]
    acked = {k: v for s in senders for k, v in s.acked.items()}
    acked[last["message"]["clientMessageId"]] = (last["message"]["id"], last["message"]["seq"])
    assert [m["seq"] for m in got] == list(range(1, chat["lastSeq"] + 1))
    assert len({m["clientMessageId"] for m in got}) == len(got)  # nothing doubled
    assert {m["clientMessageId"]: (m["id"], m["seq"]) for m in got} == acked  # nothing lost
