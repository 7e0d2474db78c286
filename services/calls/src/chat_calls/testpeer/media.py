"""Synthetic media for the test peer, and probes that tell what came back.

The caller sends a 440 Hz tone and solid-colour video (160x120, so that VP8 costs little
CPU on a shared machine); the answering peer echoes both. The probes count the frames
received and measure them: echoed audio that is not silence and echoed video whose
colour is the sent one show that the caller's own media made the round trip.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
from dataclasses import dataclass, field
from typing import Final

from aiortc.mediastreams import (
    AudioStreamTrack,
    MediaStreamError,
    MediaStreamTrack,
    VideoStreamTrack,
)
from av import AudioFrame, VideoFrame

WIDTH: Final = 160
HEIGHT: Final = 120
#: Pure red in BT.601 YUV (Y, U, V): far from grey (128, 128, 128) on the V axis.
RED_YUV: Final = (81, 90, 240)
TONE_HZ: Final = 440
#: 30 % of full scale: clearly audible, no clipping after Opus.
TONE_AMPLITUDE: Final = 0.3 * 32767


class ToneTrack(AudioStreamTrack):
    """A sine tone in the base class's 20 ms, 8 kHz mono frames (its pacing kept)."""

    def __init__(self) -> None:
        super().__init__()
        self._phase = 0

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        assert isinstance(frame, AudioFrame)
        rate = frame.sample_rate
        samples = array.array(
            "h",
            (
                int(TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * (self._phase + i) / rate))
                for i in range(frame.samples)
            ),
        )
        self._phase += frame.samples
        frame.planes[0].update(samples.tobytes())
        return frame


class ColorTrack(VideoStreamTrack):
    """Solid-colour frames at the base class's 30 fps pacing."""

    def __init__(self, yuv: tuple[int, int, int] = RED_YUV) -> None:
        super().__init__()
        self._yuv = yuv

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        for plane, value in zip(frame.planes, self._yuv, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


@dataclass
class Probe:
    """What one received track delivered."""

    kind: str
    frames: int = 0
    #: Audio: RMS of the last frame (0..32767). Video: mean V (red-difference) of the last.
    level: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def as_dict(self) -> dict[str, object]:
        """For the CLI's JSON lines."""
        return {"kind": self.kind, "frames": self.frames, "level": round(self.level, 1)}


def _measure(frame: AudioFrame | VideoFrame) -> float:
    if isinstance(frame, VideoFrame):
        # Rows are padded to `line_size`: only the visible `width` bytes of each count.
        plane = frame.planes[2]
        data = bytes(plane)
        rows = [
            data[r * plane.line_size : r * plane.line_size + plane.width]
            for r in range(plane.height)
        ]
        return sum(map(sum, rows)) / (plane.width * plane.height)
    pcm = array.array("h")
    pcm.frombytes(bytes(frame.planes[0]))
    return math.sqrt(sum(s * s for s in pcm) / len(pcm)) if pcm else 0.0


async def consume(track: MediaStreamTrack, probe: Probe) -> None:
    """Read `track` until it ends, updating `probe`."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            probe.frames += 1
            if isinstance(frame, AudioFrame | VideoFrame):
                probe.level = _measure(frame)
            probe.changed.set()
