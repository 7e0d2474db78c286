"""Push notifications end to end: gateway → messages → JetStream → notifications worker →
local servers implementing FCM v1, APNs (HTTP/2) and Web Push (decrypting the payload).

This module runs its own stack (one gateway, the workers, the notifications worker
pointed at the fakes), because it kills the notifications worker and restarts the
nats-server.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import nats
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from chat_contracts import subjects
from chat_contracts.bus import Actor, CallPush, Command, Devices, DevicesQuery, Reply
from chat_runtime import presence as presence_keys
from chat_testkit.client import ChatClient
from chat_testkit.servers import Missing
from chat_testkit.stack import Stack
from tests.integration.push_fakes import Fakes, Push

NOTIFICATIONS = "users.notifications"


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    running = Fakes(tmp_path_factory.mktemp("push-fakes")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def push_stack(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        workdir=tmp_path_factory.mktemp("push-stack"),
        gateways=1,
        workers=("messages", "groups", "users"),
        overrides={
            "CHAT_PRESENCE_GRACE_MS": "500",
            "CHAT_RATE_OTHER_PER_MIN": "60000",
            "CHAT_RATE_SEND_PER_S": "1000",
            "CHAT_RATE_SEND_BURST": "1000",
            "CHAT_PUSH_FCM_PROJECT": "chat-test",
            "CHAT_PUSH_FCM_CREDENTIALS": str(fakes.service_account_file()),
            "CHAT_PUSH_FCM_ENDPOINT": f"http://127.0.0.1:{fakes.fcm_port}",
            "CHAT_PUSH_APNS_KEY_FILE": str(fakes.apns_key_file),
            "CHAT_PUSH_APNS_KEY_ID": "TESTKEY123",
            "CHAT_PUSH_APNS_TEAM_ID": "TEAM123456",
            "CHAT_PUSH_APNS_TOPIC": "com.example.chat",
            "CHAT_PUSH_APNS_ENDPOINT": f"127.0.0.1:{fakes.apns_port}",
            "CHAT_PUSH_APNS_CA_FILE": str(fakes.tls_cert_file),
            "CHAT_PUSH_VAPID_PRIVATE_KEY": str(fakes.vapid_key_file),
            "CHAT_PUSH_VAPID_SUBJECT": "mailto:ops@example.com",
            # A crashed worker's unacked messages come back quickly in the test.
            "CHAT_PUSH_ACK_WAIT_S": "2",
        },
    )
    try:
        running.start()
        running.add(NOTIFICATIONS, NOTIFICATIONS).wait_ready()
    except Missing as exc:
        running.stop()
        pytest.skip(str(exc))
    except Exception:
        print(running.logs())
        running.stop()
        raise
    yield running
    statuses = running.stop()
    failed = {name: code for name, code in statuses.items() if code not in (0, -9)}
    assert not failed, f"did not drain cleanly: {failed}\n{running.logs()}"


@pytest_asyncio.fixture
async def client(push_stack: Stack) -> AsyncIterator[Callable[..., Any]]:
    opened: list[ChatClient] = []

    async def _connect(user_id: str, name: str | None = None) -> ChatClient:
        socket = ChatClient(user_id)
        await socket.connect(push_stack.gateway_url(0), push_stack.token(user_id, name))
        opened.append(socket)
        return socket

    yield _connect
    for socket in opened:
        await socket.close()


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def hex_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def register(
    socket: ChatClient, device_id: str, platform: str, token: str, **kw: Any
) -> None:
    ack = await socket.call(
        "notification:register",
        {"deviceId": device_id, "platform": platform, "token": token, **kw},
    )
    assert ack == {"status": "ok"}, ack


async def send(socket: ChatClient, content: str, **target: str) -> str:
    ack = await socket.call(
        "message:send",
        {"clientMessageId": uuid.uuid4().hex, "type": "TEXT", "content": content, **target},
    )
    assert ack["status"] == "ok", ack
    message_id: str = ack["message"]["id"]
    return message_id


async def wait_pushes(
    fakes: Fakes, predicate: Callable[[list[Push]], bool], timeout: float = 20
) -> list[Push]:
    return await asyncio.to_thread(fakes.received.wait_for, predicate, timeout)


async def device_count(stack: Stack, user_id: str) -> int:
    assert stack.nats is not None
    nc = await nats.connect(stack.nats.url)
    try:
        body = msgspec.msgpack.encode(
            Command(actor=Actor(user_id=user_id, name=""), payload=DevicesQuery(user_id=user_id))
        )
        msg = await nc.request("cmd.users.devices", body, timeout=5)
        reply = msgspec.msgpack.decode(msg.data, type=Reply)
        assert reply.result is not None
        return msgspec.msgpack.decode(reply.result, type=Devices).count
    finally:
        await nc.close()


async def offline_registered(
    stack: Stack,
    client: Callable[..., Any],
    user_id: str,
    devices: list[tuple[str, str, str, dict[str, Any]]],
) -> None:
    """Register devices from a socket of `user_id`, disconnect it, and wait until the
    gateway has dropped its presence lease (the worker's "connected" test)."""
    socket = await client(user_id)
    for device_id, platform, token, extra in devices:
        await register(socket, device_id, platform, token, **extra)
    await socket.close()
    assert stack.redis is not None
    redis = Redis.from_url(stack.redis.url)
    try:
        for _ in range(200):
            if not await redis.zcard(presence_keys.conns_key(user_id)):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{user_id} still has a presence lease")
    finally:
        await redis.aclose()


async def test_each_provider_gets_the_push_of_an_offline_recipient(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    android, ios, web = uuid.uuid4().hex, hex_token(), fakes.subscription()
    quiet = uuid.uuid4().hex
    await offline_registered(
        push_stack,
        client,
        bob_id,
        [
            ("phone", "android", android, {}),
            ("ipad", "ios", ios, {"provider": "apns"}),
            ("browser", "web", web, {}),
            ("quiet", "android", quiet, {"previews": False}),
        ],
    )
    ann = await client(ann_id, "Ann")
    message_id = await send(ann, "Lunch at noon?", targetUserId=bob_id)

    endpoint = msgspec.json.decode(web)["endpoint"]
    tokens = {android, ios, endpoint, quiet}
    got = await wait_pushes(fakes, lambda ps: tokens <= {p.token for p in ps})
    mine = {p.token: p for p in got if p.token in tokens}
    for token in (android, ios, endpoint):
        push = mine[token]
        assert (push.title, push.body) == ("Ann", "Lunch at noon?")
        assert push.data["messageId"] == message_id
        assert push.data["senderId"] == ann_id
        assert not push.high_priority
    assert (mine[android].provider, mine[ios].provider, mine[endpoint].provider) == (
        "fcm",
        "apns",
        "webpush",
    )
    assert mine[quiet].body == "New message"  # previews off
    assert mine[ios].collapse_id == message_id
    # The sender, online, got none; nothing twice.
    await asyncio.sleep(0.5)
    assert sorted(p.token for p in fakes.received.pushes if p.token in tokens) == sorted(tokens)


async def test_connected_recipients_get_no_push(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    owner_id, online_id, away_id = uid("own"), uid("on"), uid("away")
    online_token, away_token = uuid.uuid4().hex, uuid.uuid4().hex
    await offline_registered(push_stack, client, away_id, [("p", "android", away_token, {})])
    online = await client(online_id)
    await register(online, "p", "android", online_token)
    owner = await client(owner_id)
    ack = await owner.call("group:create", {"name": "g", "memberIds": [online_id, away_id]})
    group = ack["group"]["id"]
    message_id = await send(owner, "hello group", groupId=group)
    pushes = await wait_pushes(fakes, lambda ps: any(p.token == away_token for p in ps))
    assert [p.data["messageId"] for p in pushes if p.token == away_token] == [message_id]
    await asyncio.sleep(0.5)
    assert fakes.received.of(online_token) == []


async def test_invalid_tokens_are_removed(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    dead_fcm, dead_apns, good = uuid.uuid4().hex, hex_token(), uuid.uuid4().hex
    dead_web = fakes.subscription()
    dead_endpoint = msgspec.json.decode(dead_web)["endpoint"]
    fakes.behaviour.invalid |= {dead_fcm, dead_apns, dead_endpoint}
    await offline_registered(
        push_stack,
        client,
        bob_id,
        [
            ("a", "android", dead_fcm, {}),
            ("b", "ios", dead_apns, {"provider": "apns"}),
            ("c", "web", dead_web, {}),
            ("d", "android", good, {}),
        ],
    )
    assert await device_count(push_stack, bob_id) == 4
    ann = await client(ann_id)
    await send(ann, "are you there?", targetUserId=bob_id)
    await wait_pushes(fakes, lambda ps: any(p.token == good for p in ps))
    for _ in range(100):
        if await device_count(push_stack, bob_id) == 1:
            break
        await asyncio.sleep(0.05)
    assert await device_count(push_stack, bob_id) == 1
    asked = [token for _, token in fakes.received.requests]
    assert {dead_fcm, dead_apns, dead_endpoint} <= set(asked)


async def test_throttled_push_is_retried_after_retry_after(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    token = uuid.uuid4().hex
    fakes.behaviour.throttled[token] = 2
    fakes.behaviour.retry_after_s = 1
    await offline_registered(push_stack, client, bob_id, [("p", "android", token, {})])
    ann = await client(ann_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await send(ann, "ping", targetUserId=bob_id)
    await wait_pushes(fakes, lambda ps: any(p.token == token for p in ps))
    took = loop.time() - started
    assert took >= 2 * fakes.behaviour.retry_after_s - 0.2, took  # two Retry-After: 1
    assert [t for _, t in fakes.received.requests].count(token) == 3
    assert len(fakes.received.of(token)) == 1


async def test_worker_killed_mid_push_loses_and_repeats_nothing(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    token = uuid.uuid4().hex
    await offline_registered(push_stack, client, bob_id, [("p", "android", token, {})])
    ann = await client(ann_id)
    sent = [await send(ann, f"m{n}", targetUserId=bob_id) for n in range(5)]
    await wait_pushes(fakes, lambda ps: len([p for p in ps if p.token == token]) == 5)

    # The 6th push is held in flight at the provider while the worker is SIGKILLed.
    release = threading.Event()
    fakes.behaviour.hold[token] = release
    arrived = fakes.behaviour.held.setdefault(token, threading.Event())
    arrived.clear()
    sent += [await send(ann, f"m{n}", targetUserId=bob_id) for n in range(5, 15)]
    assert await asyncio.to_thread(arrived.wait, 15)
    worker = push_stack.processes[NOTIFICATIONS]
    worker.kill()
    release.set()
    del fakes.behaviour.hold[token]
    restarted = push_stack.add(NOTIFICATIONS, NOTIFICATIONS)
    await asyncio.to_thread(restarted.wait_ready)

    pushes = await wait_pushes(
        fakes, lambda ps: len({p.data["messageId"] for p in ps if p.token == token}) == 15, 30
    )
    await asyncio.sleep(1.0)  # a duplicate would come now, if at all
    ids = [p.data["messageId"] for p in fakes.received.of(token)]
    assert sorted(ids) == sorted(sent), (len(ids), len(pushes))


async def test_pushes_flow_again_after_a_nats_server_restart(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    ann_id, bob_id = uid("ann"), uid("bob")
    token = uuid.uuid4().hex
    await offline_registered(push_stack, client, bob_id, [("p", "android", token, {})])
    ann = await client(ann_id)
    before = await send(ann, "before", targetUserId=bob_id)
    await wait_pushes(fakes, lambda ps: any(p.token == token for p in ps))

    assert push_stack.nats is not None
    await asyncio.to_thread(push_stack.nats.restart)
    after: list[str] = []
    for n in range(3):
        for _ in range(100):  # the gateway reconnects to NATS within a second or two
            ack = await ann.call(
                "message:send",
                {
                    "clientMessageId": f"after-{n}-{bob_id}",
                    "targetUserId": bob_id,
                    "type": "TEXT",
                    "content": f"after {n}",
                },
            )
            if ack["status"] == "ok":
                after.append(ack["message"]["id"])
                break
            await asyncio.sleep(0.1)
    assert len(after) == 3
    await wait_pushes(fakes, lambda ps: len([p for p in ps if p.token == token]) == 4, 30)
    await asyncio.sleep(0.5)
    ids = [p.data["messageId"] for p in fakes.received.of(token)]
    assert sorted(ids) == sorted([before, *after])


async def test_a_muted_chat_raises_no_push(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    owner_id, muted_id, plain_id = uid("own"), uid("mute"), uid("plain")
    muted_token, plain_token = uuid.uuid4().hex, uuid.uuid4().hex
    owner = await client(owner_id)
    ack = await owner.call("group:create", {"name": "g", "memberIds": [muted_id, plain_id]})
    group = ack["group"]["id"]
    muter = await client(muted_id)
    assert await muter.call("conversation:mute", {"groupId": group}) == {"status": "ok"}
    await muter.close()
    await offline_registered(push_stack, client, muted_id, [("p", "android", muted_token, {})])
    await offline_registered(push_stack, client, plain_id, [("p", "android", plain_token, {})])
    message_id = await send(owner, "standup in 5", groupId=group)
    pushes = await wait_pushes(fakes, lambda ps: any(p.token == plain_token for p in ps))
    assert [p.data["messageId"] for p in pushes if p.token == plain_token] == [message_id]
    await asyncio.sleep(0.5)
    assert fakes.received.of(muted_token) == []


async def test_a_call_rings_the_callees_devices_at_high_priority(
    push_stack: Stack, fakes: Fakes, client: Callable[..., Any]
) -> None:
    callee_id = uid("callee")
    android, ios = uuid.uuid4().hex, hex_token()
    await offline_registered(
        push_stack,
        client,
        callee_id,
        [("a", "android", android, {}), ("i", "ios", ios, {"provider": "apns"})],
    )
    ring = CallPush(
        call_id=f"call_{uuid.uuid4().hex}",
        callee_id=callee_id,
        caller_id="ann",
        caller_name="Ann",
        call_type="video",
    )
    assert push_stack.nats is not None
    nc = await nats.connect(push_stack.nats.url)
    try:  # what the calls service publishes for an offline callee
        await nc.publish(subjects.CALL_PUSH, msgspec.msgpack.encode(ring))
        await nc.flush()
    finally:
        await nc.close()
    pushes = await wait_pushes(fakes, lambda ps: {android, ios} <= {p.token for p in ps})
    for push in (p for p in pushes if p.token in (android, ios)):
        assert push.high_priority
        assert push.data["callId"] == ring.call_id
        assert push.body == "Video call from Ann"
