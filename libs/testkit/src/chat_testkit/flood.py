"""`python -m chat_testkit.flood URL TOKEN SECONDS [EVENT]`: one user flooding a gateway.

A raw Engine.IO/Socket.IO WebSocket client in its own process (so that its work does
not slow the test's own clients): it sends `EVENT` (`message:send` by default) with an
ack as fast as the gateway answers, keeping 100 acks outstanding, reconnecting when the
gateway cuts it off, and prints one JSON line of counts when the time is up. Events
without an ack (`typing:start`, `typing:stop`) are sent without one, as fast as the
connection takes them (a WebSocket write waits while the kernel's buffers are full).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from typing import Any

import aiohttp

WINDOW = 100


#: Events the protocol gives no ack.
NO_ACK = ("typing:start", "typing:stop")


def _event(event: str, ack_id: int, peer: str) -> str:
    payload: dict[str, Any]
    if event == "message:send":
        payload = {"clientMessageId": uuid.uuid4().hex, "targetUserId": peer, "content": "flood"}
    elif event in NO_ACK:
        return "42" + json.dumps([event, {"targetUserId": peer}])
    else:
        payload = {}
    return f"42{ack_id}" + json.dumps([event, payload])


async def _flood_without_acks(
    ws: aiohttp.ClientWebSocketResponse, event: str, until: float, seen: Counter[str]
) -> None:
    """Send until the time is up, answering pings; each send waits for the socket."""

    async def read() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
                await ws.send_str("3")

    reader = asyncio.create_task(read())
    try:
        while time.monotonic() < until and not ws.closed:
            await asyncio.wait_for(
                ws.send_str(_event(event, 0, "flood-peer")), until - time.monotonic()
            )
            seen["sent"] += 1
    except TimeoutError:
        seen["blocked at the end"] += 1
    finally:
        reader.cancel()


async def _session(
    http: aiohttp.ClientSession, url: str, token: str, event: str, until: float, seen: Counter[str]
) -> None:
    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with http.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.receive_str()  # OPEN
        await ws.send_str("40" + json.dumps({"token": token}))
        answer = await ws.receive_str()
        if not answer.startswith("40"):
            seen["refused connect"] += 1
            await asyncio.sleep(0.2)
            return
        seen["connected"] += 1
        if event in NO_ACK:
            await _flood_without_acks(ws, event, until, seen)
            return
        outstanding = 0
        next_id = 0
        while time.monotonic() < until:
            while outstanding < WINDOW:
                await ws.send_str(_event(event, next_id, "flood-peer"))
                next_id += 1
                outstanding += 1
                seen["sent"] += 1
            msg = await ws.receive(timeout=max(0.1, until - time.monotonic()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                seen[f"closed {ws.close_code}"] += 1
                return
            data = msg.data
            if data == "2":
                await ws.send_str("3")
            elif data.startswith("43"):
                outstanding -= 1
                body = json.loads(data[data.index("[") :])[0]
                seen[f"{body.get('status')} {body.get('code', '')}".strip()] += 1


async def _main(url: str, token: str, seconds: float, event: str) -> None:
    seen: Counter[str] = Counter()
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            try:
                await _session(http, url, token, event, until, seen)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                seen[f"error {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)
    print(json.dumps(dict(seen)), flush=True)


if __name__ == "__main__":
    event = sys.argv[4] if len(sys.argv) > 4 else "message:send"
    asyncio.run(_main(sys.argv[1], sys.argv[2], float(sys.argv[3]), event))
