"""The messages worker's settings: lifecycle rules and the clock offset from `CHAT_*`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chat_messages.__main__ import MessagesSettings, OffsetClock
from chat_messages.rules import Rules
from chat_runtime.clock import ManualClock
from chat_runtime.settings import SettingsError, load_settings


def test_defaults_are_the_protocols_rules() -> None:
    assert load_settings(MessagesSettings, {}).rules() == Rules()


def test_windows_and_pin_policy_come_from_the_environment() -> None:
    env = {
        "CHAT_EDIT_WINDOW_S": "60",
        "CHAT_DELETE_WINDOW_S": "120",
        "CHAT_PIN_ADMINS_ONLY": "false",
    }
    rules = load_settings(MessagesSettings, env).rules()
    assert rules.edit_window == timedelta(minutes=1)
    assert rules.delete_window == timedelta(minutes=2)
    assert rules.pin_admins_only is False


def test_a_malformed_window_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="CHAT_EDIT_WINDOW_S"):
        load_settings(MessagesSettings, {"CHAT_EDIT_WINDOW_S": "soon"})


def test_offset_clock_runs_ahead_of_its_inner_clock() -> None:
    inner = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock = OffsetClock(61 * 60 * 1000, inner)
    assert clock.now() - inner.now() == timedelta(minutes=61)
    inner.advance(seconds=5)
    assert clock.now() == datetime(2026, 1, 1, 1, 1, 5, tzinfo=UTC)
