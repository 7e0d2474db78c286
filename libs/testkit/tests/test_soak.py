"""The soak's verdict: each check reads the run's samples (no servers here)."""

from __future__ import annotations

from chat_testkit.soak import GARBAGE_PER_ACK_BOUND, SoakResult


def _result(acks_after_warmup: int, garbage: dict[str, dict[str, int]]) -> SoakResult:
    result = SoakResult(clients=10, seconds=100, warmup_s=30)
    # Acks spread over the windows after warm-up (one before it, not counted).
    result.latencies = [
        (30 + i * 70 / acks_after_warmup, "send", 5.0) for i in range(acks_after_warmup)
    ]
    result.latencies.append((10, "send", 5.0))
    result.garbage = garbage
    return result


def _held(result: SoakResult, prefix: str) -> list[bool]:
    return [ok for text, ok in result.checks(2048) if text.startswith(prefix)]


def test_garbage_cycles_are_judged_per_ack_after_warmup() -> None:
    under = int(GARBAGE_PER_ACK_BOUND * 1000) - 1
    result = _result(1000, {"gateway-a": {}, "gateway-b": {"cell": under}})
    assert result.acks_after_warmup == 1000
    assert _held(result, "gateway-a: garbage") == [True]
    assert _held(result, "gateway-b: garbage") == [True]
    # The nats-py subscription cycles: 11 objects per unsubscribe.
    leaking = _result(1000, {"gateway-a": {"deque": 400, "Subscription": 100}})
    assert _held(leaking, "gateway-a: garbage") == [False]
    assert "## Verdict: FAILED" in leaking.markdown("Soak", "cmd", 2048)
    assert "| gateway-a | 500 | deque 400, Subscription 100 |" in leaking.markdown("S", "c", 2048)


def test_a_run_without_garbage_readings_has_no_such_check() -> None:
    result = _result(100, {})
    assert not any("garbage" in text for text, _ in result.checks(2048))
    assert "Garbage cycles" not in result.markdown("Soak", "cmd", 2048)
