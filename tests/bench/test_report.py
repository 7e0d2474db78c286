"""The benchmark's report survives failed and skipped runs (a full run at load 30 lost
seven stack starts and then crashed in `refusals`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _load_report() -> ModuleType:
    # `bench` is a directory run as `python -m bench`, not an installed package.
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


report = _load_report()


def test_failed_and_skipped_runs_leave_the_table_and_the_notes_intact() -> None:
    runs: list[dict[str, object]] = [
        {"metric": "e2e", "side": "ours", "rep": 2, "error": "messages not ready"},
        {"metric": "fanout", "side": "ours", "rep": 0, "error": "boom"},
        {"metric": "storm", "side": "ours", "rep": 0, "skipped": "needs Node"},
    ]
    assert report.refusals(runs) == []
    assert report.generator_peaks(runs) == {}
    assert report.foreign_load(runs) == 0.0
    rows = {row.key: row for row in report.summarize(runs, None, "no MongoDB")}
    assert rows["3b"].verdict == "not measured"
    assert rows["7"].verdict == "not measured"
    assert rows["7"].ours == "needs Node"
