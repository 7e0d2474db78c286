"""The mediaUrl gate: nothing for messages without one, one claim request otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from chat_contracts import DomainError, ErrorCode, RetryableError, subjects
from chat_contracts.bus import Actor, Command, MediaClaim
from chat_messages.domain import ConversationTarget, GroupTarget, PeerTarget, Target
from chat_messages.media import MediaGate
from chat_runtime.bus import Bus

AMY = Actor(user_id="amy", name="Amy")
_claim = msgspec.msgpack.Decoder(Command[MediaClaim])


@pytest_asyncio.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_url, name="test-media-gate")
    yield connected
    await connected.close()


async def test_messages_without_media_make_no_request(bus: Bus) -> None:
    seen: list[Command[MediaClaim]] = []

    async def record(msg: Msg) -> None:
        seen.append(_claim.decode(msg.data))  # never answered: the gate times out

    sub = await bus.subscribe(subjects.command(subjects.MEDIA, subjects.MEDIA_CLAIM), record)
    await bus.flush()
    gate = MediaGate(bus, timeout_ms=200)
    try:
        await gate.admit(
            AMY, GroupTarget(group_id="g1"), media_url=None, message_type="TEXT",
            message_id="m_0", client_message_id="c0",
        )  # fmt: skip
        await bus.flush()
        assert seen == []

        targets: list[tuple[Target, dict[str, str]]] = [
            (GroupTarget(group_id="g1"), {"group_id": "g1"}),
            (ConversationTarget(conversation_id="c_1"), {"conversation_id": "c_1"}),
            (PeerTarget(user_a="amy", user_b="bob"), {"peer_user_id": "bob"}),
        ]
        for target, _named in targets:
            with pytest.raises(RetryableError) as exc:
                await gate.admit(
                    AMY, target, media_url="http://m/v1/media/md_1", message_type="IMAGE",
                    message_id="m_1", client_message_id="c1",
                )  # fmt: skip
            assert exc.value.code is ErrorCode.UNAVAILABLE
        assert len(seen) == 3
        for command, (_, named) in zip(seen, targets, strict=True):
            assert command.actor == AMY
            claim = command.payload
            assert (claim.media_url, claim.message_type, claim.message_id) == (
                "http://m/v1/media/md_1", "IMAGE", "m_1",
            )  # fmt: skip
            assert {k: getattr(claim, k) for k in named} == named
    finally:
        await sub.unsubscribe()


async def test_without_a_media_service_no_media_url_is_valid() -> None:
    gate = MediaGate(None)
    await gate.admit(
        AMY, GroupTarget(group_id="g"), media_url=None, message_type="TEXT", message_id="m",
        client_message_id=None,
    )  # fmt: skip
    with pytest.raises(DomainError) as exc:
        await gate.admit(
            AMY, GroupTarget(group_id="g"), media_url="https://x", message_type="IMAGE",
            message_id="m", client_message_id=None,
        )  # fmt: skip
    assert (exc.value.code, exc.value.field) == (ErrorCode.VALIDATION_ERROR, "mediaUrl")
