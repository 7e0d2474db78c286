"""python-socketio for the long-polling path, with what it cannot parse answered.

python-socketio decodes a client's Socket.IO packet inside the private
`AsyncServer._handle_eio_message`. A packet it cannot read (an ack id of "²", an event
with no name or on a namespace we do not serve, a binary packet, a CONNECT_ERROR from a
client) raises there: python-engineio logs a traceback, the client hears nothing, and
the socket's refused-event allowance is never spent. Here the decode refuses such a
packet with `BadPacket`, and the server answers it like the lean WebSocket path does:
counted against the socket's allowance (`Connection.strike`) and, where an ack id can be
read, acked VALIDATION_ERROR naming the problem. No traceback.

Relies on python-socketio internals (`_handle_eio_message`, `Packet.decode` reading
`cls.json`) checked against the versions pinned in services/gateway/pyproject.toml;
tests/test_sio.py fails loudly when they change.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import socketio
from socketio import packet as sio_packet

from chat_contracts import ErrorCode
from chat_gateway import acks, jsonmod, wire
from chat_gateway.conn import OutFrame
from chat_gateway.registry import Registry

log = logging.getLogger(__name__)

_BINARY = (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK)
#: Client packet types python-socketio handles; CONNECT_ERROR (4) is server→client only.
_FROM_CLIENT = (sio_packet.CONNECT, sio_packet.DISCONNECT, sio_packet.EVENT, sio_packet.ACK)


class BadPacket(ValueError):
    """A client packet the gateway refuses; the message is what the client is told."""


class GuardedPacket(sio_packet.Packet):  # type: ignore[misc]
    """Socket.IO packets whose decode refuses what python-socketio would choke on."""

    def decode(self, encoded_packet: Any) -> int:
        """Decode as python-socketio does; raise `BadPacket` for anything we refuse."""
        if not isinstance(encoded_packet, str):
            # An attachment with no binary packet before it (we never accept one).
            raise BadPacket("binary messages are not supported")
        try:
            attachments: int = super().decode(encoded_packet)
        except ValueError as exc:  # "²" as an ack id, a bad type, an ack id too long
            raise BadPacket(f"bad Socket.IO packet: {exc}") from None
        kind = self.packet_type
        if kind in _BINARY:
            raise BadPacket("Socket.IO binary packets are not supported")
        if kind not in _FROM_CLIENT:
            raise BadPacket(f"unexpected packet type {kind}")
        if kind != sio_packet.CONNECT and self.namespace not in (None, "/"):
            raise BadPacket(f"unknown namespace {self.namespace}")
        if kind == sio_packet.EVENT:
            data = self.data
            # python-socketio reads `data[0]` as the name before any check.
            if not isinstance(data, list) or not data or not isinstance(data[0], str):
                raise BadPacket("malformed event packet")
        return attachments


def readable_ack_id(text: str) -> int | None:
    """The ack id of a Socket.IO packet if one can be read (ASCII digits), else None."""
    head = text[1:]
    dash = head.find("-")
    if text[:1] in (wire.SIO_BINARY_EVENT, wire.SIO_BINARY_ACK) and dash > 0:
        # `5<attachments>-[/nsp,][id]<json>`: read the rest as an EVENT would be.
        text, head = wire.SIO_EVENT + head[dash + 1 :], head[dash + 1 :]
    try:
        return wire.parse_sio(text).ack_id
    except ValueError:
        return None


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """`socketio.AsyncServer` answering the packets `GuardedPacket` refuses."""

    def __init__(self, registry: Registry, **options: Any) -> None:
        super().__init__(serializer=GuardedPacket, json=jsonmod, **options)
        # Socket.IO packets decode leniently (bad JSON becomes an event the gateway's
        # catch-all acks); Engine.IO keeps the strict module (it tells JSON from plain
        # text by whether `loads` raises). The constructor set both to jsonmod.
        self.packet_class.json = jsonmod.Lenient
        self.registry = registry

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if not data:
            # python-socketio skips the decode of an empty packet and reads it as an
            # EVENT without data (a TypeError inside python-engineio).
            self.refuse(eio_sid, None, "empty packet")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except BadPacket as exc:
            ack_id = readable_ack_id(data) if isinstance(data, str) else None
            self.refuse(eio_sid, ack_id, str(exc))

    def refuse(self, eio_sid: str, ack_id: int | None, reason: str) -> None:
        """Answer a refused packet: an error ack where it has an ack id, and one strike
        against the socket's allowance (which closes a socket that keeps sending them)."""
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        sock = self.registry.sockets.get(sid) if sid is not None else None
        # Debug only: a client sending garbage must not be able to flood the log.
        log.debug("refused a packet of %s: %s", sid or eio_sid, reason)
        if sock is None:
            # Not connected (yet): nothing is answered before the CONNECT, and the
            # session is held to the connect deadline (sessions.py).
            return
        if ack_id is not None:
            ack = acks.error(ErrorCode.VALIDATION_ERROR, reason)
            sock.conn.send(OutFrame(f"{wire.SIO_ACK}{ack_id}{msgspec.json.encode([ack]).decode()}"))
        sock.conn.strike()
