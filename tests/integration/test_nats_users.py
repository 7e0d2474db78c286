"""The whole product with per-service NATS users: every flow still works, none is refused.

The stack's nats-server runs the config `python -m chat_runtime.nats_auth --conf`
prints (the users the Helm values hold), and each process logs in as its own user
(`CHAT_NATS_USER`): a cross-service query or event missing from the access list shows
up here as a NATS permissions violation, long before a production install would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from chat_runtime import nats_auth
from chat_testkit.client import ChatClient
from chat_testkit.stack import Stack
from tests.integration.calls.conftest import OFFER
from tests.integration.conftest import serve
from tests.integration.media_client import MediaUser, pdf_bytes


@pytest.fixture(scope="module")
def users_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    passwords = {a.user: nats_auth.new_password() for a in nats_auth.access_list()}
    running = Stack(workdir=tmp_path_factory.mktemp("nats-users"), nats_passwords=passwords)
    yield from serve(running)


def violations(stack: Stack) -> list[str]:
    """Permission violations any process or the server reported."""
    assert stack.nats is not None
    logs = [stack.nats.log, *(p.log for p in stack.processes.values())]
    return [
        f"{Path(log).name}: {line}"
        for log in logs
        for line in Path(log).read_text(errors="replace").splitlines()
        if "violation" in line.lower()
    ]


async def test_every_flow_runs_under_per_service_users(users_stack: Stack) -> None:
    suffix = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{suffix}", f"bob-{suffix}"
    alice_a = ChatClient("alice")
    bob_b = ChatClient("bob")
    await alice_a.connect(users_stack.gateway_url(0), users_stack.token(alice))
    await bob_b.connect(users_stack.gateway_url(1), users_stack.token(bob))
    try:
        group = await alice_a.call("group:create", {"name": "perm", "memberIds": [bob]})
        assert group["status"] == "ok", group
        group_id = group["group"]["id"]
        await bob_b.wait_for("group:member:added")
        # messages asks groups (cmd.groups.membership) before it stores a group message.
        sent = await alice_a.call(
            "message:send",
            {"clientMessageId": uuid.uuid4().hex, "groupId": group_id, "content": "hi"},
        )
        assert sent["status"] == "ok", sent
        assert (await bob_b.wait_for("message:new"))["content"] == "hi"
        dm = await bob_b.call(
            "message:send",
            {"clientMessageId": uuid.uuid4().hex, "targetUserId": alice, "content": "yo"},
        )
        assert dm["status"] == "ok", dm
        assert (await alice_a.wait_for("message:new"))["content"] == "yo"
        await alice_a.emit("typing:start", {"groupId": group_id})
        await bob_b.wait_for("typing:start")
        if "calls" in users_stack.workers:
            # calls asks users (block_state, devices) before it rings an offline callee.
            offer = {"targetUserId": f"nobody-{suffix}", "offer": OFFER, "callType": "audio"}
            ack = await alice_a.call("call:offer", offer)
            assert ack["status"] == "ok", ack
            rejected = await alice_a.wait_for("call:rejected")
            assert rejected["reason"] == "offline"
        if "media" in users_stack.workers:
            await media_flow(users_stack, alice_a, group_id, alice, bob)
    finally:
        await alice_a.close()
        await bob_b.close()
    assert violations(users_stack) == []


async def media_flow(
    stack: Stack, sock: ChatClient, group_id: str, owner: str, member: str
) -> None:
    """Upload (progress to the uploader's user subject), claim (messages asks media),
    a member's download (media asks groups), deletion (the MEDIA stream's consumer)."""
    async with aiohttp.ClientSession() as http:
        uploader, reader = MediaUser(stack, http, owner), MediaUser(stack, http, member)
        done = await uploader.upload("perm.pdf", pdf_bytes(5_000))
        assert (await sock.wait_for("upload:complete"))["mediaUrl"] == done["mediaUrl"]
        payload = {"clientMessageId": uuid.uuid4().hex, "groupId": group_id}
        sent = await sock.call(
            "message:send", {**payload, "type": "FILE", "mediaUrl": done["mediaUrl"]}
        )
        assert sent["status"] == "ok", sent
        assert (await reader.get(done["mediaUrl"]))[0] == 200
        deleted = await sock.call(
            "message:delete", {"messageId": sent["message"]["id"], "deleteForEveryone": True}
        )
        assert deleted["status"] == "ok", deleted
        for _ in range(250):  # 5 s at most for the consumer to handle the deletion
            if (await reader.get(done["mediaUrl"]))[0] == 404:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("media still served after its message was deleted")
