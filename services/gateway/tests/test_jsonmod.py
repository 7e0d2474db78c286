"""The msgspec JSON module keeps Engine.IO's guard against huge integers."""

from __future__ import annotations

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
