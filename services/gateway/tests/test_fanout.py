"""The Socket.IO frame is built around the publisher's JSON without re-encoding it."""

from __future__ import annotations

import json

from chat_gateway.conn import OutFrame


def test_event_frame_is_a_socketio_v5_event_packet() -> None:
    data = b'{"id":"m_1","content":"h\\u00e9 \\"x\\""}'
    frame = OutFrame.event("message:new", data).text
    assert frame.startswith("2[")
    assert json.loads(frame[1:]) == ["message:new", {"id": "m_1", "content": 'hé "x"'}]
