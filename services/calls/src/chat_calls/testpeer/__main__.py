"""`python -m chat_calls.testpeer`: answer (and echo) calls, or place one.

    python -m chat_calls.testpeer --url http://127.0.0.1:8080 --token "$(./taskw token bob)"
    python -m chat_calls.testpeer --url ... --token ... --call bob --hangup-after 10

Every step is printed as one JSON line on stdout (`{"event": "incoming", ...}`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from chat_calls.testpeer.peer import Session, TestPeer


def _print(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chat_calls.testpeer", description=__doc__)
    parser.add_argument("--url", required=True, help="gateway base URL (http://host:port)")
    parser.add_argument("--token", required=True, help="JWT the gateway accepts")
    parser.add_argument("--call", metavar="USER_ID", help="place a call to this user")
    parser.add_argument("--audio-only", action="store_true", help="with --call: no video")
    parser.add_argument(
        "--hangup-after", type=float, default=0.0, metavar="S", help="with --call: end after S s"
    )
    parser.add_argument("--relay", action="store_true", help="iceTransportPolicy relay (TURN only)")
    parser.add_argument(
        "--ice-servers",
        default="[]",
        metavar="JSON",
        help="with --call: iceServers for the offer (the ack's come after it)",
    )
    parser.add_argument("--no-answer", action="store_true", help="do not answer incoming calls")
    return parser.parse_args(argv)


async def _say_hello(session: Session) -> None:
    """Once the data channel opens, one message (the answering peer echoes it)."""
    await session.opened.wait()
    if session.channel is not None:
        session.channel.send("hello")
        _print("sent", callId=session.call_id, text="hello")


async def _run(args: argparse.Namespace) -> int:
    peer = TestPeer(
        args.url,
        args.token,
        answer=not args.no_answer,
        relay_only=args.relay,
        ice_servers=json.loads(args.ice_servers),
        report=_print,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await peer.connect()
    try:
        if args.call:
            session = await peer.place(args.call, video=not args.audio_only)
            peer.spawn(_say_hello(session))
            if args.hangup_after:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.hangup_after)
                if not session.ended.done():
                    _print("hangup", ack=await peer.hang_up(session))
                    await asyncio.wait_for(asyncio.shield(session.ended), 10)
                return 0
            stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            await asyncio.wait([stopped, session.ended], return_when=asyncio.FIRST_COMPLETED)
            return 0
        await asyncio.wait(
            [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(peer.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        return 0
    finally:
        await peer.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    sys.exit(asyncio.run(_run(_parse(argv))))


if __name__ == "__main__":
    main()
