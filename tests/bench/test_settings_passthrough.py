"""`BENCH_CHAT_X=v` reaches our processes as `CHAT_X=v` (an A/B of a setting)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_only_bench_chat_variables_pass_without_their_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `bench` is a directory run as `python -m bench`, not an installed package.
    monkeypatch.syspath_prepend(str(ROOT))
    ours = importlib.import_module("bench.ours")
    monkeypatch.setenv("BENCH_CHAT_COMMAND_BATCH_WINDOW_MS", "4")
    monkeypatch.setenv("BENCH_JWT_SECRET", "not a chat setting")
    monkeypatch.setenv("CHAT_LOG_LEVEL", "DEBUG")
    assert ours.settings_from_env() == {"CHAT_COMMAND_BATCH_WINDOW_MS": "4"}
