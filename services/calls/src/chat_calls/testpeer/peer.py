"""A WebRTC peer (aiortc) that signals through the chat gateways like a client app.

- Answering: every `call:incoming` is answered with a real `RTCPeerConnection` that
  echoes the caller's audio and video tracks and every data-channel message (prefixed
  `echo:`).
- Calling: `place()` offers a tone, red video and a data channel, and probes what
  comes back.

aiortc gathers every candidate before `setLocalDescription` returns (no trickle), so
its own SDP carries them; candidates a browser trickles (`call:ice-candidate`) are added.
What happens is reported through `report(event, **fields)` (JSON lines in the CLI).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from chat_calls.testpeer.media import ColorTrack, Probe, ToneTrack, consume
from chat_runtime.worker import cancel_tasks

log = logging.getLogger(__name__)

Report = Callable[..., None]
#: How long a signaling ack may take before the peer gives up (s).
ACK_TIMEOUT_S = 10.0


def ice_configuration(servers: list[dict[str, Any]], relay_only: bool) -> RTCConfiguration:
    """An aiortc configuration from the protocol's `iceServers`."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


@dataclass
class Session:
    """One call of this peer."""

    call_id: str
    pc: RTCPeerConnection
    probes: list[Probe] = field(default_factory=list)
    channel: RTCDataChannel | None = None
    messages: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    accepted: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set whenever any received track delivered a frame.
    media: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def probe(self, kind: str) -> Probe:
        """The probe of the received `kind` track (waits for none)."""
        for p in self.probes:
            if p.kind == kind:
                return p
        raise KeyError(kind)

    async def frames(self, kind: str, count: int) -> Probe:
        """Wait until the received `kind` track delivered `count` frames."""
        while True:
            self.media.clear()
            for p in self.probes:
                if p.kind == kind and p.frames >= count:
                    return p
            await self.media.wait()


class TestPeer:
    """One signed-in socket and its calls."""

    #: Not a pytest test class despite its name.
    __test__ = False

    def __init__(
        self,
        url: str,
        token: str,
        *,
        answer: bool = True,
        relay_only: bool = False,
        ice_servers: list[dict[str, Any]] | None = None,
        report: Report | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.auto_answer = answer
        self.relay_only = relay_only
        #: Used when placing calls (the ack's iceServers come after the offer is made).
        self.ice_servers = ice_servers or []
        self.report: Report = report or (lambda event, **fields: None)
        self.sessions: dict[str, Session] = {}
        self._relay = MediaRelay()
        self._sio = socketio.AsyncClient(reconnection=False)
        self._sio.on("call:incoming", self._on_incoming)
        self._sio.on("call:accepted", self._on_accepted)
        self._sio.on("call:ice-candidate", self._on_candidate)
        self._sio.on("call:ended", self._on_ended)
        self._sio.on("call:rejected", self._on_rejected)
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        """Sign in over WebSocket with the token."""
        await self._sio.connect(
            self.url, auth={"token": self.token}, transports=["websocket"], wait_timeout=10
        )
        self.report("ready", sid=self._sio.get_sid())

    async def close(self) -> None:
        """Close every call and the socket."""
        for session in list(self.sessions.values()):
            await self._teardown(session)
        if self._sio.connected:
            await self._sio.disconnect()

    async def wait(self) -> None:
        """Until the socket closes."""
        await self._sio.wait()

    # --- answering -----------------------------------------------------------------------

    async def _on_incoming(self, data: dict[str, Any]) -> None:
        self.report("incoming", callId=data["callId"], callerId=data["callerId"])
        if self.auto_answer:
            self.spawn(self._answer(data))

    async def _answer(self, data: dict[str, Any]) -> None:
        call_id = data["callId"]
        pc = RTCPeerConnection(ice_configuration(data.get("iceServers", []), self.relay_only))
        session = Session(call_id, pc)
        self.sessions[call_id] = session

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            # Echo: the caller's own track goes straight back (answer includes it).
            pc.addTrack(self._relay.subscribe(track))
            self.report("track", callId=call_id, kind=track.kind)

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            session.channel = channel

            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                text = message if isinstance(message, str) else message.decode(errors="replace")
                self.report("message", callId=call_id, text=text)
                channel.send("echo:" + text)

        self._watch(session)
        offer = data["offer"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        local = pc.localDescription
        ack = await self._sio.call(
            "call:answer",
            {"callId": call_id, "answer": {"type": local.type, "sdp": local.sdp}},
            timeout=ACK_TIMEOUT_S,
        )
        self.report("answered", callId=call_id, ack=ack)
        if ack.get("status") != "ok":
            await self._teardown(session)

    # --- calling -------------------------------------------------------------------------

    async def place(self, callee: str, video: bool = True) -> Session:
        """Offer a call with a tone, red video (if `video`) and a data channel `chat`;
        returns once the ack arrived (the call then rings)."""
        pc = RTCPeerConnection(ice_configuration(self.ice_servers, self.relay_only))
        pc.addTrack(ToneTrack())
        if video:
            pc.addTrack(ColorTrack())
        channel = pc.createDataChannel("chat")
        await pc.setLocalDescription(await pc.createOffer())
        local = pc.localDescription
        ack = await self._sio.call(
            "call:offer",
            {
                "targetUserId": callee,
                "offer": {"type": local.type, "sdp": local.sdp},
                "callType": "video" if video else "audio",
            },
            timeout=ACK_TIMEOUT_S,
        )
        if ack.get("status") != "ok":
            await pc.close()
            raise RuntimeError(f"call:offer refused: {ack}")
        session = Session(ack["callId"], pc, channel=channel)
        self.sessions[session.call_id] = session

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            text = message if isinstance(message, str) else message.decode(errors="replace")
            self.report("message", callId=session.call_id, text=text)
            session.messages.put_nowait(text)

        @channel.on("open")
        def on_open() -> None:
            session.opened.set()
            self.report("channel-open", callId=session.call_id)

        self._watch(session)
        self.report("offered", callId=session.call_id, callee=callee)
        return session

    async def hang_up(self, session: Session) -> dict[str, Any]:
        """`call:end`; the ack."""
        ack: dict[str, Any] = await self._sio.call(
            "call:end", {"callId": session.call_id}, timeout=ACK_TIMEOUT_S
        )
        return ack

    async def _on_accepted(self, data: dict[str, Any]) -> None:
        session = self.sessions.get(data["callId"])
        if session is None:
            return
        answer = data["answer"]
        await session.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer["sdp"], type=answer["type"])
        )
        session.accepted.set()
        self.report("accepted", callId=session.call_id)

    # --- both ----------------------------------------------------------------------------

    def _watch(self, session: Session) -> None:
        pc = session.pc

        @pc.on("track")
        def probe_track(track: MediaStreamTrack) -> None:
            probe = Probe(track.kind, changed=session.media)
            session.probes.append(probe)
            # Through the relay: the echo reads the same track, and a track's frames
            # would otherwise be shared out between its two readers.
            reader = self._relay.subscribe(track)
            session.tasks.append(asyncio.ensure_future(consume(reader, probe)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            self.report("connection", callId=session.call_id, state=pc.connectionState)

    async def _on_candidate(self, data: dict[str, Any]) -> None:
        session = self.sessions.get(data["callId"])
        init = data.get("candidate") or {}
        line = str(init.get("candidate", ""))
        if session is None or not line:
            return
        candidate = candidate_from_sdp(line.removeprefix("a=").split(":", 1)[1])
        candidate.sdpMid = init.get("sdpMid")
        candidate.sdpMLineIndex = init.get("sdpMLineIndex")
        await session.pc.addIceCandidate(candidate)

    async def _on_ended(self, data: dict[str, Any]) -> None:
        self.report("ended", **data)
        session = self.sessions.get(data["callId"])
        if session is not None:
            if not session.ended.done():
                session.ended.set_result(data)
            await self._teardown(session)

    async def _on_rejected(self, data: dict[str, Any]) -> None:
        self.report("rejected", **data)
        session = self.sessions.get(data["callId"])
        if session is not None:
            if not session.ended.done():
                session.ended.set_result(data)
            await self._teardown(session)

    async def _teardown(self, session: Session) -> None:
        self.sessions.pop(session.call_id, None)
        for probe in session.probes:
            self.report("received", callId=session.call_id, **probe.as_dict())
        await session.pc.close()
        await cancel_tasks(session.tasks)

    def spawn(self, coro: Any) -> None:
        """Run `coro` in the background; a failure is reported as an `error` event."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.report("error", error=repr(task.exception()))
