"""The product on a 3-node NATS cluster: fan-out across routes, the join race, a node killed.

Its own stack: three nats-server nodes (routes on loopback, clustered JetStream), three
gateways (gateway-a on node 1, -b on node 2, -c on node 3) and the workers spread over
the nodes (messages on 1, groups on 2, users on 3). Every process has all three URLs,
its own node first, and fails over to the next when its node dies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from chat_testkit.servers import Missing
from chat_testkit.stack import Stack
from tests.integration.conftest import Connect, cmid, make_group

NODES = 3
#: Joins per kind in the default run (two kinds: member added, group created); the
#: `soak` run does `SOAK_JOINS` of each (`./taskw soak`).
JOINS = 100
SOAK_JOINS = int(os.environ.get("CHAT_SOAK_JOINS", "2000"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Overrides the suite's single-server stack for this module (see the docstring)."""
    running = Stack(
        workdir=tmp_path_factory.mktemp("cluster"),
        gateways=NODES,
        nats_nodes=NODES,
        overrides={
            # The loops below send far faster than a person.
            "CHAT_RATE_OTHER_PER_MIN": "600000",
            "CHAT_RATE_SEND_PER_S": "10000",
            "CHAT_RATE_SEND_BURST": "10000",
            "CHAT_RATE_GROUP_CREATE_PER_MIN": "600000",
            "CHAT_RATE_SYNC_PER_MIN": "600000",
        },
    )
    try:
        running.start()
    except Missing as exc:
        running.stop()
        pytest.skip(str(exc))
    except Exception:
        print(running.logs())
        if running.cluster is not None:
            print(running.cluster.logs())
        running.stop()
        raise
    yield running
    statuses = running.stop()
    failed = {name: code for name, code in statuses.items() if code != 0}
    assert not failed, f"services did not drain cleanly on SIGTERM: {failed}\n{running.logs()}"


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
