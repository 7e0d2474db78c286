"""The call state machine: pure transition functions over `Call`, time passed in.

ringing ──answer──▶ active ──end/timeout/disconnect──▶ ended
   └──reject/end/timeout/disconnect──────────────────▶ ended

Nothing here reads a clock or does I/O: every function takes `now` (ms since the epoch)
and returns a new `Call` (or raises `DomainError`); `state.CallState` makes each
transition atomic in Redis and the handlers publish what `notices` lists.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from chat_contracts import DomainError, ErrorCode
from chat_contracts import server as o
from chat_runtime.clock import iso

CallType = Literal["audio", "video"]

#: PROTOCOL.md: unanswered calls end after 60 s, a party without sockets for more
#: than 15 s ends the call, calls last at most 4 h.
RING_TIMEOUT_MS: Final = 60_000
DISCONNECT_MS: Final = 15_000
MAX_DURATION_MS: Final = 4 * 3600 * 1000


class Phase(enum.StrEnum):
    """Where a call is in its life."""

    RINGING = "ringing"
    ACTIVE = "active"
    ENDED = "ended"


class Reason(enum.StrEnum):
    """How a call ended (`call:ended` reasons and `call:rejected` reasons)."""

    HANGUP = "hangup"
    TIMEOUT = "timeout"
    DISCONNECT = "disconnect"
    DECLINED = "declined"
    BUSY = "busy"
    BLOCKED = "blocked"
    OFFLINE = "offline"


#: Reasons told with `call:rejected` (the call never became active).
REJECTIONS: Final = frozenset({Reason.DECLINED, Reason.BUSY, Reason.BLOCKED, Reason.OFFLINE})


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    """The configurable time rules (ms)."""

    ring_ms: int = RING_TIMEOUT_MS
    disconnect_ms: int = DISCONNECT_MS
    max_ms: int = MAX_DURATION_MS


class Call(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One call as stored in Redis (msgpack) while it rings or runs, and a while after."""

    id: str
    caller_id: str
    callee_id: str
    caller_name: str
    call_type: CallType
    created_ms: int
    phase: Phase = Phase.RINGING
    caller_avatar: str | None = None
    #: The caller's socket that offered: the answer and the callee's candidates go there.
    caller_sid: str | None = None
    #: The callee's socket that answered: after the answer, the only one signaled.
    answer_sid: str | None = None
    answered_ms: int | None = None
    ended_ms: int | None = None
    reason: Reason | None = None
    ended_by: str | None = None
    #: `call:incoming` reached a connected callee (False while ringing by push only).
    delivered: bool = True
    #: Party -> since when (ms) it has had no connected socket.
    gone: dict[str, int] = {}


# --- offer --------------------------------------------------------------------------


def check_target(caller_id: str, callee_id: str) -> None:
    """Calling oneself is a malformed request."""
    if caller_id == callee_id:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "cannot call yourself", field="targetUserId")


def refusal(
    *,
    blocked: bool,
    caller_busy: bool,
    callee_busy: bool,
    callee_online: bool,
    callee_devices: int,
) -> Reason | None:
    """Why an offer is refused at once (None = it rings).

    Blocked first, so that a blocked caller learns nothing about the callee's state.
    A caller already in a call is a CONFLICT error, not a rejection: it is its own doing.
    """
    if blocked:
        return Reason.BLOCKED
    if caller_busy:
        raise DomainError(ErrorCode.CONFLICT, "you are already in a call")
    if callee_busy:
        return Reason.BUSY
    if not callee_online and callee_devices == 0:
        return Reason.OFFLINE
    return None


def refused(call: Call, reason: Reason, now: int) -> Call:
    """The record of an offer refused before ringing."""
    return msgspec.structs.replace(
        call, phase=Phase.ENDED, ended_ms=now, reason=reason, delivered=False
    )


# --- signaling ------------------------------------------------------------------------


def _party(call: Call, user_id: str) -> None:
    if user_id not in (call.caller_id, call.callee_id):
        raise DomainError(ErrorCode.FORBIDDEN, "not a party of this call", field="callId")


def answer(call: Call, user_id: str, sid: str | None, now: int) -> Call:
    """The callee answers from socket `sid`; the first answer wins."""
    _party(call, user_id)
    if user_id != call.callee_id:
        raise DomainError(ErrorCode.FORBIDDEN, "only the callee answers", field="callId")
    if call.phase is Phase.ACTIVE:
        raise DomainError(ErrorCode.CONFLICT, "the call was already answered")
    if call.phase is Phase.ENDED:
        raise DomainError(ErrorCode.CONFLICT, "the call has ended")
    return msgspec.structs.replace(
        call, phase=Phase.ACTIVE, answered_ms=now, answer_sid=sid, delivered=True
    )


def reject(call: Call, user_id: str, now: int) -> Call:
    """The callee declines a ringing call."""
    _party(call, user_id)
    if user_id != call.callee_id:
        raise DomainError(
            ErrorCode.FORBIDDEN, "only the callee rejects; the caller ends", field="callId"
        )
    if call.phase is not Phase.RINGING:
        raise DomainError(ErrorCode.CONFLICT, f"the call is {call.phase.value}")
    return _ended(call, Reason.DECLINED, now, ended_by=user_id)


def end(call: Call, user_id: str, now: int) -> Call | None:
    """Either party hangs up (or cancels while ringing); None when it had already ended."""
    _party(call, user_id)
    if call.phase is Phase.ENDED:
        return None
    return _ended(call, Reason.HANGUP, now, ended_by=user_id)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one signaling message goes: a user's sockets, or one of them."""

    user_id: str
    to_sid: str | None = None


def ice_target(call: Call, user_id: str, sid: str | None) -> Target | None:
    """Where a candidate from `user_id`'s socket `sid` goes; None = dropped.

    Before the answer the caller's candidates reach every ringing socket of the callee;
    after it only the answering socket. The callee's go to the offering socket.
    """
    _party(call, user_id)
    if call.phase is Phase.ENDED:
        return None
    if user_id == call.caller_id:
        if call.phase is Phase.RINGING:
            return Target(call.callee_id)
        return Target(call.callee_id, call.answer_sid)
    if call.phase is Phase.ACTIVE and sid is not None and sid != call.answer_sid:
        return None  # a callee device that did not answer has nothing to say
    return Target(call.caller_id, call.caller_sid)


# --- time -------------------------------------------------------------------------------


def deadline(call: Call, timing: Timing) -> int | None:
    """The next moment (ms) `tick` may change the call without any other input."""
    if call.phase is Phase.ENDED:
        return None
    if call.phase is Phase.RINGING:
        moments = [call.created_ms + timing.ring_ms]
    else:
        moments = [(call.answered_ms or call.created_ms) + timing.max_ms]
    moments.extend(since + timing.disconnect_ms for since in call.gone.values())
    return min(moments)


def watched(call: Call) -> list[str]:
    """Parties whose sockets count now: the caller always; the callee once it answered,
    or while it rings by push only (its first connect delivers `call:incoming`)."""
    if call.phase is Phase.ACTIVE:
        return [call.caller_id, call.callee_id]
    if call.phase is Phase.RINGING:
        return [call.caller_id] if call.delivered else [call.caller_id, call.callee_id]
    return []


def tick(call: Call, now: int, online: dict[str, bool], timing: Timing) -> Call:
    """Apply the time rules: presence seen now (`online` of `watched` parties), then
    deadlines. Returns the call unchanged when nothing is due."""
    if call.phase is Phase.ENDED:
        return call
    gone = dict(call.gone)
    delivered = call.delivered
    for user_id, is_on in online.items():
        if user_id == call.callee_id and call.phase is Phase.RINGING:
            # A callee rung by push has no socket by design; its connect delivers.
            delivered = delivered or is_on
            continue
        if is_on:
            gone.pop(user_id, None)
        else:
            gone.setdefault(user_id, now)
    call = msgspec.structs.replace(call, gone=gone, delivered=delivered)
    for user_id, since in sorted(gone.items(), key=lambda item: item[1]):
        if now - since >= timing.disconnect_ms:
            return _ended(call, Reason.DISCONNECT, now, ended_by=user_id)
    if call.phase is Phase.RINGING and now >= call.created_ms + timing.ring_ms:
        return _ended(call, Reason.TIMEOUT, now)
    if call.phase is Phase.ACTIVE and now >= (call.answered_ms or 0) + timing.max_ms:
        return _ended(call, Reason.TIMEOUT, now)
    return call


def _ended(call: Call, reason: Reason, now: int, ended_by: str | None = None) -> Call:
    return msgspec.structs.replace(
        call, phase=Phase.ENDED, ended_ms=now, reason=reason, ended_by=ended_by, gone={}
    )


def duration_s(call: Call) -> int | None:
    """Whole seconds between answer and end, for calls that were active."""
    if call.answered_ms is None or call.ended_ms is None:
        return None
    return max(0, call.ended_ms - call.answered_ms) // 1000


# --- what the parties are told ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    """One fan-out: `event` with `payload` to `user_id`'s sockets (or only `to_sid`,
    or all but `skip_sid`)."""

    user_id: str
    event: str
    payload: msgspec.Struct
    to_sid: str | None = None
    skip_sid: str | None = None


def ending_notices(call: Call, origin_sid: str | None = None) -> list[Notice]:
    """What both parties learn when `call` ended (`origin_sid`: the socket that caused it,
    which has its ack; used for declines, where the decliner's other sockets stop ringing)."""
    assert call.reason is not None
    if call.reason in REJECTIONS:
        rejected = o.CallRejected(call_id=call.id, reason=call.reason.value)  # type: ignore[arg-type]
        notices = [Notice(call.caller_id, "call:rejected", rejected)]
        if call.reason is Reason.DECLINED:
            notices.append(Notice(call.callee_id, "call:rejected", rejected, skip_sid=origin_sid))
        return notices
    ended = o.CallEnded(
        call_id=call.id,
        reason=call.reason.value,  # type: ignore[arg-type]
        ended_by=call.ended_by,
        duration=duration_s(call),
    )
    return [
        Notice(call.caller_id, "call:ended", ended),
        Notice(call.callee_id, "call:ended", ended),
    ]


def answer_notices(call: Call, answer_sdp: dict[str, Any]) -> list[Notice]:
    """The caller's offering socket gets the answer; the callee's other sockets stop ringing."""
    return [
        Notice(
            call.caller_id,
            "call:accepted",
            o.CallAccepted(call_id=call.id, answer=answer_sdp),
            to_sid=call.caller_sid,
        ),
        Notice(
            call.callee_id,
            "call:ended",
            o.CallEnded(call_id=call.id, reason="answered_elsewhere"),
            skip_sid=call.answer_sid,
        ),
    ]


def incoming(call: Call, offer: dict[str, Any], ice_servers: list[o.IceServer]) -> o.CallIncoming:
    """`call:incoming` for the callee's sockets (`offer`: the relayed `{type, sdp}`)."""
    return o.CallIncoming(
        call_id=call.id,
        caller_id=call.caller_id,
        caller_name=call.caller_name,
        caller_avatar=call.caller_avatar,
        call_type=call.call_type,
        offer=offer,
        ice_servers=ice_servers,
    )


def record(call: Call) -> o.CallRecord:
    """The history row of a call."""

    def at(ms: int | None) -> str | None:
        return None if ms is None else iso(datetime.fromtimestamp(ms / 1000, UTC))

    return o.CallRecord(
        call_id=call.id,
        caller_id=call.caller_id,
        callee_id=call.callee_id,
        call_type=call.call_type,
        started_at=at(call.created_ms) or "",
        answered_at=at(call.answered_ms),
        ended_at=at(call.ended_ms),
        reason=None if call.reason is None else call.reason.value,
        duration=duration_s(call),
    )
