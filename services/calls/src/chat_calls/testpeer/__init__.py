"""The aiortc test peer: `python -m chat_calls.testpeer --url ... --token ...`."""

from chat_calls.testpeer.peer import Session, TestPeer

__all__ = ["Session", "TestPeer"]
