"""A real WebRTC call between two aiortc peers, signaled through two gateways.

Bob is the test peer as users run it (`python -m chat_calls.testpeer`, a subprocess on
gateway b); Alice is a `TestPeer` in this process on gateway a, so the test can look
at what she receives. Media and data flow over loopback (host candidates).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from chat_calls.testpeer import TestPeer
from chat_calls.testpeer.media import RED_YUV
from chat_testkit.stack import Stack

#: WebRTC set-up on loopback takes well under a second; a loaded 2-core machine
#: running VP8 in two processes needs more.
MEDIA_TIMEOUT_S = 20.0
#: Frames of each kind the echo must bring back (audio: 20 ms each; video: 30 fps).
FRAMES = 15


class PeerProcess:
    """The test peer CLI; its JSON lines collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            async with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    async def wait_for(
        self, event: str, match: Callable[[dict[str, Any]], bool] = lambda _l: True
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((x for x in self.lines if x["event"] == event and match(x)), None)

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: found() is not None), MEDIA_TIMEOUT_S
                )
            except TimeoutError:
                raise AssertionError(f"test peer: no {event!r} in {self.lines}") from None
        line = found()
        assert line is not None
        return line


@asynccontextmanager
async def peer_process(url: str, token: str) -> AsyncIterator[PeerProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chat_calls.testpeer",
        "--url",
        url,
        "--token",
        token,
        stdout=asyncio.subprocess.PIPE,
    )
    peer = PeerProcess(proc)
    try:
        yield peer
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        peer._reader.cancel()


async def test_media_and_data_flow_both_ways_then_hang_up(
    calls_stack: Stack, uid: Callable[[str], str]
) -> None:
    alice, bob = uid("alice"), uid("bob")
    token_b = calls_stack.token(bob, "Bob")
    async with peer_process(calls_stack.gateway_url(1), token_b) as bob_peer:
        await bob_peer.wait_for("ready")
        alice_peer = TestPeer(calls_stack.gateway_url(0), calls_stack.token(alice), answer=False)
        await alice_peer.connect()
        try:
            session = await alice_peer.place(bob, video=True)
            await bob_peer.wait_for("incoming", lambda x: x["callId"] == session.call_id)
            await asyncio.wait_for(session.accepted.wait(), MEDIA_TIMEOUT_S)
            answered = await bob_peer.wait_for("answered")
            assert answered["ack"] == {"status": "ok"}

            # Data: Alice -> Bob (he logs it) -> back to Alice as an echo.
            assert session.channel is not None
            await asyncio.wait_for(session.opened.wait(), MEDIA_TIMEOUT_S)
            session.channel.send("ping")
            assert await asyncio.wait_for(session.messages.get(), MEDIA_TIMEOUT_S) == "echo:ping"
            assert (await bob_peer.wait_for("message"))["text"] == "ping"
            kinds = {
                (await bob_peer.wait_for("track", lambda x, k=k: x["kind"] == k))["kind"]
                for k in ("audio", "video")
            }
            assert kinds == {"audio", "video"}

            # Media: Alice's tone and red video come back through Bob's echo.
            video, audio = await asyncio.wait_for(
                asyncio.gather(session.frames("video", FRAMES), session.frames("audio", FRAMES)),
                MEDIA_TIMEOUT_S,
            )
            # Red's V is 240, grey's 128: VP8 keeps the colour well inside that gap.
            assert video.level > (RED_YUV[2] + 128) / 2, video
            # A 30 % tone after Opus both ways is far above silence (RMS ~0).
            assert audio.level > 1_000, audio

            assert await alice_peer.hang_up(session) == {"status": "ok"}
            ended = await asyncio.wait_for(asyncio.shield(session.ended), MEDIA_TIMEOUT_S)
            assert (ended["reason"], ended["endedBy"]) == ("hangup", alice)
            assert ended["duration"] >= 0
            bob_ended = await bob_peer.wait_for("ended")
            assert (bob_ended["callId"], bob_ended["reason"]) == (session.call_id, "hangup")
            # Bob's side received Alice's media too before the hang-up.
            for kind in ("audio", "video"):
                got = await bob_peer.wait_for("received", lambda x, k=kind: x["kind"] == k)
                assert got["frames"] >= FRAMES, got
        finally:
            await alice_peer.close()
