"""The benchmark's smoke run: every metric path end to end at tiny sizes, in seconds.

A benchmark is not a test; this only proves that `./taskw bench` still works: the stack
starts, the load generator (Node, or the Python fallback without Node) drives every
metric, and the table comes out with a row per metric.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("1a", "1b", "2", "3a", "3b", "3c", "4", "5a", "5b", "5c", "6", "7")


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("nats_url", "redis_url")  # skips, naming the binary, if missing
def test_smoke_run_prints_a_row_per_metric(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
    assert done.returncode == 0, report
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    keys = [line.split("|")[1].strip() for line in table if not line.startswith("| # |")]
    assert keys == list(ROWS), report
    document = json.loads(out.read_text())
    assert [row["key"] for row in document["rows"]] == list(ROWS)
    assert not [run for run in document["runs"] if "error" in run], report
