"""The call record store contract, run against every implementation (`store` fixture)."""

from __future__ import annotations

from chat_calls.store import CallStore
from chat_contracts.server import CallRecord


def rec(n: int, caller: str = "a", callee: str = "b", **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": f"call_{n:04d}",
        "caller_id": caller,
        "callee_id": callee,
        "call_type": "video",
        "started_at": f"2026-01-01T00:00:{n % 60:02d}.000Z",
        "ended_at": f"2026-01-01T00:01:{n % 60:02d}.000Z",
        "reason": "hangup",
    }
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


async def test_saved_record_reads_back_for_both_parties(store: CallStore) -> None:
    full = rec(1, answered_at="2026-01-01T00:00:02.000Z", duration=59)
    await store.save(full)
    assert await store.history("a", None, 10) == ([full], False)
    assert await store.history("b", None, 10) == ([full], False)
    assert await store.history("c", None, 10) == ([], False)


async def test_save_is_idempotent_per_call(store: CallStore) -> None:
    await store.save(rec(1, reason="timeout"))
    await store.save(rec(1, reason="hangup", duration=3))
    calls, more = await store.history("a", None, 10)
    assert [(c.reason, c.duration) for c in calls] == [("hangup", 3)]
    assert not more


async def test_history_pages_newest_first(store: CallStore) -> None:
    for n in range(7):
        caller, callee = ("a", "b") if n % 2 else ("c", "a")
        await store.save(rec(n, caller, callee))
    await store.save(rec(99, "x", "y"))
    first, more = await store.history("a", None, 3)
    assert [c.call_id for c in first] == ["call_0006", "call_0005", "call_0004"]
    assert more
    second, more = await store.history("a", first[-1].call_id, 3)
    assert [c.call_id for c in second] == ["call_0003", "call_0002", "call_0001"]
    assert more
    last, more = await store.history("a", second[-1].call_id, 3)
    assert [c.call_id for c in last] == ["call_0000"]
    assert not more


async def test_a_blocked_callers_attempts_are_not_the_callees_history(store: CallStore) -> None:
    await store.save(rec(1, "a", "b", reason="blocked", ended_at=None))
    await store.save(rec(2, "a", "b", reason="offline"))
    assert [c.call_id for c in (await store.history("a", None, 10))[0]] == [
        "call_0002",
        "call_0001",
    ]
    assert [c.call_id for c in (await store.history("b", None, 10))[0]] == ["call_0002"]
