"""The routes table drives each worker's router: typed registration, checked at start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from chat_contracts import client as c
from chat_contracts import server as o
from chat_contracts.bus import Actor, Command, MembersQuery
from chat_contracts.routes import Route
from chat_runtime.bus import Bus, encode
from chat_runtime.worker import Router, RouterError, Worker

ECHO = Route("demo:echo", c.GroupRef, "demo", "echo", o.Empty)
LATER = Route("demo:later", c.GroupRef, "demo", "later", o.Empty, served=False)
OTHER = Route("other:thing", c.GroupRef, "other", "thing", o.Empty)
TABLE = (ECHO, LATER, OTHER)


async def echo(cmd: Command[c.GroupRef]) -> o.Empty:
    return o.Empty()


async def members(cmd: Command[MembersQuery]) -> None:
    return None


def test_a_complete_router_passes_the_check() -> None:
    router = Router("demo", TABLE)
    router.route(ECHO, echo)
    router.internal("members", MembersQuery, members)
    router.check()
    assert router.actions == ["echo", "members"]


def test_a_served_route_without_handler_fails_the_check() -> None:
    router = Router("demo", TABLE)
    with pytest.raises(RouterError, match=r"no handler for served route.*demo:echo"):
        router.check()


def test_a_handler_for_an_unserved_route_fails_the_check() -> None:
    router = Router("demo", TABLE)
    router.route(ECHO, echo)
    router.route(LATER, echo)
    with pytest.raises(RouterError, match="served=False: demo:later"):
        router.check()


def test_routes_of_another_domain_and_internal_client_actions_are_refused() -> None:
    router = Router("demo", TABLE)
    with pytest.raises(RouterError, match="not a route of domain demo"):
        router.route(OTHER, echo)
    with pytest.raises(RouterError, match="client route"):
        router.internal("echo", c.GroupRef, echo)
    router.route(ECHO, echo)
    with pytest.raises(RouterError, match="twice"):
        router.route(ECHO, echo)
    with pytest.raises(ValueError, match="not a subject name"):
        router.internal("a.*", MembersQuery, members)


def test_the_real_routers_are_checked_against_the_real_table() -> None:
    # A router for a domain of the table with nothing registered lacks its served rows.
    with pytest.raises(RouterError, match="message:send"):
        Router("messages").check()


async def test_a_worker_refuses_to_start_with_an_incomplete_router(nats_url: str) -> None:
    bus = await Bus.connect(nats_url, name="test")
    try:
        with pytest.raises(RouterError):
            await Worker(bus, Router("demo", TABLE)).start()
        # Nothing subscribed: nobody answers the domain.
        reply = await bus.request(
            "cmd.demo.echo",
            encode(Command(actor=Actor(user_id="a", name="A"), payload=c.GroupRef(group_id="g"))),
            timeout_ms=500,
        )
        assert reply.status == "retry"
    finally:
        await bus.close()


ROOT = Path(__file__).resolve().parents[3]

_SNIPPET = """
from chat_contracts import client as c, routes, server as o
from chat_contracts.bus import Command
from chat_runtime.worker import Router

async def send(cmd: Command[c.MessageSend]) -> o.MessageResult: raise NotImplementedError
async def wrong_payload(cmd: Command[c.GroupCreate]) -> o.MessageResult: raise NotImplementedError
async def wrong_result(cmd: Command[c.MessageSend]) -> o.GroupResult: raise NotImplementedError
async def no_result(cmd: Command[c.MessageSend]) -> None: raise NotImplementedError
async def empty(cmd: Command[c.GroupRef]) -> o.Empty: raise NotImplementedError
async def ice(cmd: Command[c.CallIce]) -> None: raise NotImplementedError

router = Router("messages")
router.route(routes.MESSAGE_SEND, send)
router.route(routes.MESSAGE_SEND, wrong_payload)  # line 14
router.route(routes.MESSAGE_SEND, wrong_result)  # line 15
router.route(routes.MESSAGE_SEND, no_result)  # line 16
router.route(routes.GROUP_DELETE, empty)
router.route(routes.CALL_ICE_CANDIDATE, ice)
router.route(routes.CALL_ICE_CANDIDATE, send)  # line 19
"""


def test_mypy_ties_a_handler_to_its_route(tmp_path: Path) -> None:
    """A handler whose payload or result differs from its route's is a type error."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(_SNIPPET).lstrip("\n"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(snippet),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    lines = sorted(
        {int(line.split(":")[1]) for line in done.stdout.splitlines() if ": error:" in line}
    )
    assert lines == [14, 15, 16, 19], done.stdout


def test_decoders_use_the_route_payload() -> None:
    router = Router("demo", TABLE)
    router.route(ECHO, echo)
    body = encode(Command(actor=Actor(user_id="a", name="A"), payload={"groupId": "no good"}))

    async def run() -> str | None:
        reply = await router.dispatch("echo", body)
        return reply.code

    import asyncio

    assert asyncio.run(run()) == "VALIDATION_ERROR"
    assert msgspec.msgpack.decode(encode(o.Empty())) == {}
