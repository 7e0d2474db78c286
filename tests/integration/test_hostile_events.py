"""Hostile payloads for every client event, through a real gateway (property-based).

For each event of the routes table, hypothesis builds payloads around the event's own
Struct: its fields missing, of random JSON types, huge, deeply nested, numbers beyond
2^53, lone surrogates and emoji edge cases, plus fields it does not have, and payloads
that are not objects at all. Every ack must be a well-formed `ok`, `error` or `retry`
(never INTERNAL, never late), the socket must stay usable, the gateway must log no
traceback and keep its memory, and a bystander must see nothing of it.

`CHAT_FUZZ_EXAMPLES` sets the examples per event (default 25, so the module runs in
well under a minute; `./taskw soak` runs 500).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_contracts import ErrorCode, routes
from chat_runtime.memory import rss_kib
from chat_testkit.client import ChatClient
from chat_testkit.probes import LogMark
from chat_testkit.stack import Stack
from tests.integration.calls.conftest import ANSWER, CANDIDATE, OFFER
from tests.integration.conftest import Connect, cmid

EXAMPLES = int(os.environ.get("CHAT_FUZZ_EXAMPLES", "40"))
#: What the gateways answered, by `status code` (printed by the last test).
OUTCOMES: Counter[str] = Counter()
CODES = {code.value for code in ErrorCode}
#: Gateway RSS growth allowed over one module of fuzzing (KiB): the examples hold no
#: state, so anything near this is a leak (a 100 KB string per example would be 100 MB).
RSS_GROWTH_KIB = 40 * 1024

#: Strings that broke parsers somewhere: lone surrogates (JSON-escaped by the client),
#: NUL, bidi overrides, combining marks, ZWJ families, flags, keycaps, skin tones,
#: variation selectors, and sizes at and past every limit.
EDGE_STRINGS = [
    "",
    " ",
    "\ud800",
    "a\udfffb",
    "\udbff\udfff",
    "\x00",
    "\u202e\u202d",
    "e\u0301\u0301\u0301",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🇺🇳",
    "#️⃣",
    "👍🏽",
    "👍\ufe0f\ufe0f",
    "\ufeff",
    "x" * 128,
    "x" * 129,
    "y" * 5_000,
    "y" * 5_001,
    "z" * 100_000,
    "../../etc/passwd",
    "a.b.>",
    "*",
    "$where",
    "'; DROP TABLE messages; --",
]
BIG_NUMBERS = [2**53 - 1, 2**53, 2**53 + 1, 2**63, 2**64 + 1, -(2**63) - 1, 10**30]

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(BIG_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(EDGE_STRINGS),
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    """`[[[...]]]` `depth` deep (the client's encoder stops near 1,000)."""
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def field_values(name: str) -> st.SearchStrategy[Any]:
    """Plausible values for a field (so the deeper checks run) mixed with hostile ones."""
    plausible = st.sampled_from(["valid-id", cmid(), "TEXT", "ADMIN", "online", "hello"])
    return st.one_of(
        plausible,
        json_values,
        st.integers(min_value=0, max_value=950).map(nested),
        st.lists(st.sampled_from(EDGE_STRINGS), max_size=600),
    )


PEER = "fuzz-peer"
MID = {"messageId": "m_fuzz"}
#: A valid payload of every event: one field of it is then replaced, removed or joined
#: by strangers, so hostile values reach the workers' rules, not only the validator.
VALID: dict[str, dict[str, Any]] = {
    "message:send": {"clientMessageId": "c1", "targetUserId": PEER, "content": "hi"},
    "messages:history": {"targetUserId": PEER},
    "sync": {"since": [{"conversationId": "c_fuzz", "seq": 1, "rev": 1}]},
    "message:read": {**MID, "targetUserId": PEER},
    "message:edit": {**MID, "content": "edited"},
    "message:delete": {**MID, "deleteForEveryone": True},
    "message:reaction:add": {**MID, "emoji": "👍"},
    "message:reaction:remove": {**MID, "emoji": "👍"},
    "message:history:edits": MID,
    "message:pin": MID,
    "message:unpin": MID,
    "pins:list": {"targetUserId": PEER},
    "message:forward": {**MID, "targetUserId": PEER},
    "message:broadcast": {"content": "all", "conversationIds": ["c_fuzz"]},
    "search:messages": {"query": "hi"},
    "conversation:mute": {"conversationId": "c_fuzz"},
    "conversation:unmute": {"conversationId": "c_fuzz"},
    "group:create": {"name": "fuzz", "memberIds": [PEER]},
    "group:update": {"groupId": "g_fuzz", "name": "renamed"},
    "group:delete": {"groupId": "g_fuzz"},
    "group:member:add": {"groupId": "g_fuzz", "userId": PEER, "role": "MEMBER"},
    "group:member:remove": {"groupId": "g_fuzz", "userId": PEER},
    "group:member:role": {"groupId": "g_fuzz", "userId": PEER, "role": "ADMIN"},
    "groups:list": {},
    "group:get": {"groupId": "g_fuzz"},
    "status:set": {"status": "busy", "emoji": "📅"},
    "user:block": {"userId": PEER},
    "user:unblock": {"userId": PEER},
    "notification:register": {"deviceId": "d1", "platform": "web", "token": "t"},
    "notification:unregister": {"deviceId": "d1"},
    "presence:last_seen": {"userIds": [PEER]},
    "call:offer": {"targetUserId": PEER, "offer": OFFER, "callType": "audio"},
    "call:answer": {"callId": "k_fuzz", "answer": ANSWER},
    "call:ice-candidate": {"callId": "k_fuzz", "candidate": CANDIDATE},
    "call:reject": {"callId": "k_fuzz"},
    "call:end": {"callId": "k_fuzz"},
    "calls:history": {"limit": 5},
    "typing:start": {"targetUserId": PEER},
    "typing:stop": {"targetUserId": PEER},
    "presence:set": {"status": "away"},
    "presence:query": {"groupId": "g_fuzz"},
    "presence:subscribe": {"groupId": "g_fuzz"},
}


def test_every_event_has_a_valid_payload() -> None:
    """Each template decodes into its Struct: the mutations start from a valid payload."""
    assert VALID.keys() == routes.BY_EVENT.keys()
    for event, payload in VALID.items():
        msgspec.convert(payload, routes.BY_EVENT[event].payload)


def mutated(route: routes.Route[Any, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The event's valid payload with one field replaced or removed, maybe plus strangers."""
    base = VALID[route.event]
    names = sorted({f.encode_name for f in msgspec.structs.fields(route.payload)} | base.keys())

    def apply(name: str, value: Any, drop: bool, extra: dict[str, Any]) -> dict[str, Any]:
        out = {**extra, **base}
        if drop:
            out.pop(name, None)
        else:
            out[name] = value
        return out

    if not names:
        return st.dictionaries(st.text(max_size=12), json_values, max_size=3)
    return st.builds(
        apply,
        st.sampled_from(names),
        st.one_of(st.sampled_from(EDGE_STRINGS), field_values("")),
        st.booleans(),
        st.dictionaries(st.text(max_size=12), json_values, max_size=2),
    )


def payloads(route: routes.Route[Any, Any]) -> st.SearchStrategy[Any]:
    """Mutations of a valid payload; objects built on the event's Struct (fields
    missing, mistyped, extra); and non-objects."""
    names = [f.encode_name for f in msgspec.structs.fields(route.payload)]
    shaped = st.fixed_dictionaries(
        {},
        optional={name: field_values(name) for name in names},
    ).flatmap(
        lambda d: st.dictionaries(st.text(max_size=12), json_values, max_size=3).map(
            lambda extra: {**extra, **d}
        )
    )
    return st.one_of(mutated(route), mutated(route), shaped, json_values)


def well_formed(ack: Any) -> str | None:
    """What is wrong with an ack, or None."""
    if not isinstance(ack, dict):
        return f"not an object: {ack!r}"
    status = ack.get("status")
    if status == "ok":
        return None
    code = ack.get("code")
    if status not in ("error", "retry") or code not in CODES:
        return f"bad status/code: {ack!r}"
    if code == ErrorCode.INTERNAL.value:
        return f"INTERNAL: {ack!r}"
    if not isinstance(ack.get("error"), str):
        return f"no error text: {ack!r}"
    if status == "retry" and not (isinstance(ack.get("retryAfter"), int) and ack["retryAfter"] > 0):
        return f"retry without retryAfter: {ack!r}"
    return None


@pytest.fixture(scope="module")
def marks(stack: Stack) -> dict[str, Any]:
    """Log positions and RSS of both gateways before the module's fuzzing."""
    gateways = [stack.processes[f"gateway-{c}"] for c in "ab"]
    return {
        "logs": [LogMark.now(p) for p in gateways],
        "rss": [rss_kib(p.proc.pid) for p in gateways],
        "gateways": gateways,
    }


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
Fuzzer = Callable[[], Awaitable[ChatClient]]


@pytest.fixture
def fuzzer(connect: Connect, uid: Callable[[str], str]) -> Fuzzer:
    """The test's socket, shared by all its examples (hypothesis runs them within one
    call of the test), reconnected if a case closed it."""
    held: list[ChatClient] = []

    async def client() -> ChatClient:
        if not held or not held[0].sio.connected:
            held[:] = [await connect(uid("fuzzer"))]
        return held[0]

    return client


@pytest.mark.parametrize("route", routes.ROUTES, ids=[r.event for r in routes.ROUTES])
@SETTINGS
@given(data=st.data())
async def test_every_ack_is_well_formed_and_every_socket_stays_usable(
    marks: dict[str, Any], fuzzer: Fuzzer, route: routes.Route[Any, Any], data: st.DataObject
) -> None:
    """An event with an ack gets a well-formed one; one without leaves the socket usable
    (the next example reuses it; the last test checks the gateways' logs)."""
    client = await fuzzer()
    payload = data.draw(payloads(route), label="payload")
    if not route.ack:
        await client.emit(route.event, payload)
        OUTCOMES["no ack"] += 1
        return
    ack = await client.call(route.event, payload, timeout=8)
    OUTCOMES[f"{ack.get('status')} {ack.get('code', '')}".strip()] += 1
    problem = well_formed(ack)
    assert problem is None, f"{route.event} {_short(payload)}: {problem}"


@SETTINGS
@given(
    args=st.lists(json_values, min_size=0, max_size=3),
    event=st.one_of(st.sampled_from(EDGE_STRINGS), st.text(max_size=30)),
)
async def test_unknown_events_and_odd_arguments_get_validation_errors(
    marks: dict[str, Any], fuzzer: Fuzzer, args: list[Any], event: str
) -> None:
    client = await fuzzer()
    if event in routes.BY_EVENT or event in ("connect", "disconnect", "message"):
        return
    # python-socketio sends a tuple as several arguments.
    data = None if not args else args[0] if len(args) == 1 else tuple(args)
    ack = await client.sio.call(event, data, timeout=8)
    OUTCOMES[f"{ack.get('status')} {ack.get('code', '')} (unknown event)"] += 1
    problem = well_formed(ack)
    assert problem is None, f"{event!r} {_short(args)}: {problem}"
    assert ack["status"] == "error", ack
    assert ack["code"] == "VALIDATION_ERROR", ack


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + f"... ({len(text)} chars)"


async def test_after_fuzzing_gateways_are_clean_and_others_unaffected(
    stack: Stack, marks: dict[str, Any], connect: Connect, uid: Callable[[str], str]
) -> None:
    """Runs last in this module: no traceback was logged, memory is bounded, and two
    bystanders on different gateways still talk."""
    print(f"hostile payloads: {sum(OUTCOMES.values())} sent; answers: {dict(OUTCOMES)}")
    for mark in marks["logs"]:
        assert mark.tracebacks() == [], mark.tracebacks()[0]
    for proc, before in zip(marks["gateways"], marks["rss"], strict=True):
        grown = rss_kib(proc.proc.pid) - before
        assert grown < RSS_GROWTH_KIB, f"{proc.name} grew {grown} KiB while fuzzed"
    a, b = uid("calm-a"), uid("calm-b")
    calm_a = await connect(a, gateway=0)
    calm_b = await connect(b, gateway=1)
    ack = await calm_a.call(
        "message:send", {"clientMessageId": cmid(), "targetUserId": b, "content": "still here"}
    )
    assert ack["status"] == "ok", ack
    assert (await calm_b.wait_for("message:new"))["content"] == "still here"
