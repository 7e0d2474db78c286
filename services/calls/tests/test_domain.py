"""The call state machine: every transition, refusal and time rule, with ms passed in."""

from __future__ import annotations

import pytest

from chat_calls import domain
from chat_calls.domain import Call, Phase, Reason, Target, Timing
from chat_contracts import DomainError, ErrorCode
from chat_contracts import server as o

T0 = 1_000_000
TIMING = Timing(ring_ms=60_000, disconnect_ms=15_000, max_ms=4 * 3600 * 1000)


def ringing(**kw: object) -> Call:
    fields: dict[str, object] = {
        "id": "call_1",
        "caller_id": "a",
        "callee_id": "b",
        "caller_name": "A",
        "call_type": "audio",
        "created_ms": T0,
        "caller_sid": "sa",
    }
    fields.update(kw)
    return Call(**fields)  # type: ignore[arg-type]


def active(at: int = T0 + 1_000) -> Call:
    return domain.answer(ringing(), "b", "sb1", at)


def code(exc: pytest.ExceptionInfo[DomainError]) -> ErrorCode:
    return exc.value.code


def test_calling_oneself_is_a_validation_error() -> None:
    with pytest.raises(DomainError) as exc:
        domain.check_target("a", "a")
    assert code(exc) is ErrorCode.VALIDATION_ERROR
    assert exc.value.field == "targetUserId"
    domain.check_target("a", "b")


@pytest.mark.parametrize(
    ("blocked", "callee_busy", "online", "devices", "expected"),
    [
        (False, False, True, 0, None),
        (False, False, False, 2, None),
        (False, False, False, 0, Reason.OFFLINE),
        (False, True, True, 0, Reason.BUSY),
        (True, True, True, 0, Reason.BLOCKED),
        (True, False, False, 0, Reason.BLOCKED),
    ],
)
def test_refusal(
    blocked: bool, callee_busy: bool, online: bool, devices: int, expected: Reason | None
) -> None:
    got = domain.refusal(
        blocked=blocked,
        caller_busy=False,
        callee_busy=callee_busy,
        callee_online=online,
        callee_devices=devices,
    )
    assert got is expected


def test_a_caller_in_a_call_gets_conflict_but_blocked_wins() -> None:
    args = {"callee_busy": False, "callee_online": True, "callee_devices": 0}
    with pytest.raises(DomainError) as exc:
        domain.refusal(blocked=False, caller_busy=True, **args)  # type: ignore[arg-type]
    assert code(exc) is ErrorCode.CONFLICT
    assert domain.refusal(blocked=True, caller_busy=True, **args) is Reason.BLOCKED  # type: ignore[arg-type]


def test_refused_offer_is_an_ended_record_without_duration() -> None:
    call = domain.refused(ringing(), Reason.OFFLINE, T0)
    assert call.phase is Phase.ENDED
    assert domain.deadline(call, TIMING) is None
    assert domain.ending_notices(call) == [
        domain.Notice("a", "call:rejected", o.CallRejected(call_id="call_1", reason="offline"))
    ]
    rec = domain.record(call)
    assert (rec.reason, rec.duration, rec.answered_at) == ("offline", None, None)


def test_answer_makes_the_call_active_and_the_first_answer_wins() -> None:
    call = active()
    assert (call.phase, call.answer_sid, call.answered_ms) == (Phase.ACTIVE, "sb1", T0 + 1_000)
    with pytest.raises(DomainError) as exc:
        domain.answer(call, "b", "sb2", T0 + 2_000)
    assert code(exc) is ErrorCode.CONFLICT


@pytest.mark.parametrize(
    ("who", "expected"), [("a", ErrorCode.FORBIDDEN), ("x", ErrorCode.FORBIDDEN)]
)
def test_only_the_callee_answers(who: str, expected: ErrorCode) -> None:
    with pytest.raises(DomainError) as exc:
        domain.answer(ringing(), who, "s", T0)
    assert code(exc) is expected


def test_answering_an_ended_call_is_conflict() -> None:
    ended = domain.end(ringing(), "a", T0 + 5)
    assert ended is not None
    with pytest.raises(DomainError) as exc:
        domain.answer(ended, "b", "sb", T0 + 6)
    assert code(exc) is ErrorCode.CONFLICT


def test_answer_notices_go_to_the_offering_socket_and_stop_the_other_devices() -> None:
    call = active()
    notices = domain.answer_notices(call, {"type": "answer", "sdp": "x"})
    assert notices == [
        domain.Notice(
            "a",
            "call:accepted",
            o.CallAccepted(call_id="call_1", answer={"type": "answer", "sdp": "x"}),
            to_sid="sa",
        ),
        domain.Notice(
            "b",
            "call:ended",
            o.CallEnded(call_id="call_1", reason="answered_elsewhere"),
            skip_sid="sb1",
        ),
    ]


def test_reject_by_the_callee_declines_and_reaches_its_other_sockets() -> None:
    call = domain.reject(ringing(), "b", T0 + 10)
    assert (call.phase, call.reason, call.ended_by) == (Phase.ENDED, Reason.DECLINED, "b")
    rejected = o.CallRejected(call_id="call_1", reason="declined")
    assert domain.ending_notices(call, origin_sid="sb2") == [
        domain.Notice("a", "call:rejected", rejected),
        domain.Notice("b", "call:rejected", rejected, skip_sid="sb2"),
    ]


def test_reject_rules() -> None:
    with pytest.raises(DomainError) as exc:
        domain.reject(ringing(), "a", T0)
    assert code(exc) is ErrorCode.FORBIDDEN
    with pytest.raises(DomainError) as exc:
        domain.reject(ringing(), "stranger", T0)
    assert code(exc) is ErrorCode.FORBIDDEN
    with pytest.raises(DomainError) as exc:
        domain.reject(active(), "b", T0 + 5_000)
    assert code(exc) is ErrorCode.CONFLICT


def test_end_is_idempotent_and_carries_the_duration() -> None:
    call = active(T0 + 1_000)
    ended = domain.end(call, "a", T0 + 1_000 + 61_999)
    assert ended is not None
    assert (ended.reason, ended.ended_by, domain.duration_s(ended)) == (Reason.HANGUP, "a", 61)
    assert domain.end(ended, "b", T0 + 70_000) is None
    assert domain.ending_notices(ended) == [
        domain.Notice(
            uid,
            "call:ended",
            o.CallEnded(call_id="call_1", reason="hangup", ended_by="a", duration=61),
        )
        for uid in ("a", "b")
    ]
    with pytest.raises(DomainError) as exc:
        domain.end(call, "stranger", T0)
    assert code(exc) is ErrorCode.FORBIDDEN


def test_cancel_while_ringing_has_no_duration() -> None:
    ended = domain.end(ringing(), "a", T0 + 3_000)
    assert ended is not None
    assert domain.ending_notices(ended)[0].payload == o.CallEnded(
        call_id="call_1", reason="hangup", ended_by="a"
    )


def test_ice_routing_before_and_after_the_answer() -> None:
    call = ringing()
    assert domain.ice_target(call, "a", "sa") == Target("b")
    assert domain.ice_target(call, "b", "sb1") == Target("a", "sa")
    call = active()
    assert domain.ice_target(call, "a", "sa") == Target("b", "sb1")
    assert domain.ice_target(call, "b", "sb1") == Target("a", "sa")
    assert domain.ice_target(call, "b", "sb2") is None
    with pytest.raises(DomainError) as exc:
        domain.ice_target(call, "x", "sx")
    assert code(exc) is ErrorCode.FORBIDDEN
    ended = domain.end(call, "a", T0 + 9_000)
    assert ended is not None
    assert domain.ice_target(ended, "a", "sa") is None


def test_ring_timeout() -> None:
    call = ringing()
    assert domain.deadline(call, TIMING) == T0 + 60_000
    assert domain.tick(call, T0 + 59_999, {"a": True}, TIMING) == call
    ended = domain.tick(call, T0 + 60_000, {"a": True}, TIMING)
    assert (ended.phase, ended.reason, ended.ended_by) == (Phase.ENDED, Reason.TIMEOUT, None)
    assert domain.ending_notices(ended)[0].payload == o.CallEnded(
        call_id="call_1", reason="timeout"
    )


def test_four_hour_limit_ends_an_active_call_with_its_duration() -> None:
    call = active(T0)
    assert domain.deadline(call, TIMING) == T0 + 4 * 3600 * 1000
    assert domain.tick(call, T0 + 4 * 3600 * 1000 - 1, {"a": True, "b": True}, TIMING) == call
    ended = domain.tick(call, T0 + 4 * 3600 * 1000, {"a": True, "b": True}, TIMING)
    assert (ended.reason, domain.duration_s(ended)) == (Reason.TIMEOUT, 4 * 3600)


def test_disconnect_after_15_s_without_sockets() -> None:
    call = active(T0)
    gone = domain.tick(call, T0 + 5_000, {"a": True, "b": False}, TIMING)
    assert gone.phase is Phase.ACTIVE
    assert gone.gone == {"b": T0 + 5_000}
    assert domain.deadline(gone, TIMING) == T0 + 20_000
    still = domain.tick(gone, T0 + 19_999, {"a": True, "b": False}, TIMING)
    assert still == gone
    ended = domain.tick(gone, T0 + 20_000, {"a": True, "b": False}, TIMING)
    assert (ended.reason, ended.ended_by, domain.duration_s(ended)) == (
        Reason.DISCONNECT,
        "b",
        20,
    )


def test_a_reconnect_within_15_s_keeps_the_call() -> None:
    call = domain.tick(active(T0), T0 + 5_000, {"a": True, "b": False}, TIMING)
    back = domain.tick(call, T0 + 14_000, {"a": True, "b": True}, TIMING)
    assert back.gone == {}
    assert domain.tick(back, T0 + 30_000, {"a": True, "b": True}, TIMING).phase is Phase.ACTIVE


def test_while_ringing_only_the_caller_counts() -> None:
    call = ringing()
    assert domain.watched(call) == ["a"]
    gone = domain.tick(call, T0 + 1_000, {"a": False}, TIMING)
    ended = domain.tick(gone, T0 + 16_000, {"a": False}, TIMING)
    assert (ended.reason, ended.ended_by) == (Reason.DISCONNECT, "a")


def test_a_callee_rung_by_push_is_delivered_when_it_connects() -> None:
    call = ringing(delivered=False)
    assert domain.watched(call) == ["a", "b"]
    assert domain.tick(call, T0 + 20_000, {"a": True, "b": False}, TIMING) == call
    on = domain.tick(call, T0 + 25_000, {"a": True, "b": True}, TIMING)
    assert on.delivered
    assert on.phase is Phase.RINGING
    assert on.gone == {}
    assert domain.watched(on) == ["a"]


def test_record_times_are_iso() -> None:
    ended = domain.end(active(T0), "b", T0 + 2_500)
    assert ended is not None
    rec = domain.record(ended)
    assert rec == o.CallRecord(
        call_id="call_1",
        caller_id="a",
        callee_id="b",
        call_type="audio",
        started_at="1970-01-01T00:16:40.000Z",
        answered_at="1970-01-01T00:16:40.000Z",
        ended_at="1970-01-01T00:16:42.500Z",
        reason="hangup",
        duration=2,
    )
