"""The msgspec JSON module keeps Engine.IO's guard against huge integers."""

from __future__ import annotations

import msgspec
import pytest

from chat_gateway import jsonmod


def test_round_trip_is_compact() -> None:
    text = jsonmod.dumps({"a": [1, "é", None]}, separators=(",", ":"))
    assert text == '{"a":[1,"é",null]}'
    assert jsonmod.loads(text) == {"a": [1, "é", None]}


def test_long_digit_runs_inside_strings_are_fine() -> None:
    digits = "9" * 200
    assert jsonmod.loads(f'["{digits}"]') == [digits]


def test_huge_integers_are_refused() -> None:
    with pytest.raises(ValueError, match="too large"):
        jsonmod.loads("[" + "9" * 200 + "]")


@pytest.mark.parametrize(
    "text",
    ["[" + "9" * 200 + "]", '["a",{bad', "[" * 1000 + "]" * 1000, ""],
    ids=["huge-integer", "invalid", "nested-1000-deep", "empty"],
)
def test_the_socketio_flavour_turns_undecodable_text_into_the_marker(text: str) -> None:
    # python-socketio then hands an event named MALFORMED to the gateway, which acks it.
    assert jsonmod.Lenient.loads(text) == [jsonmod.MALFORMED]
    assert jsonmod.Lenient.loads('["a",1]') == ["a", 1]


def test_the_engineio_flavour_still_raises_for_plain_text() -> None:
    # Engine.IO keeps "probe" as text only because loads raises on it.
    with pytest.raises(msgspec.DecodeError):
        jsonmod.loads("probe")
