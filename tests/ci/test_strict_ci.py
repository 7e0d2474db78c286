"""Under CI=true a skip for a missing real part fails; a MongoDB skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = """
import pytest

def test_needs_redis():
    pytest.skip("redis-server (Debian redis-server) is not installed")

def test_needs_mongodb():
    pytest.skip("MongoDB: CHAT_MONGODB_URL is not set and no Docker engine answered")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_runs():
    assert True
"""


@pytest.mark.parametrize(("ci", "summary"), [
    ("true", "1 failed, 1 passed, 1 skipped, 1 xfailed"),
    ("", "1 passed, 2 skipped, 1 xfailed"),
])  # fmt: skip
def test_skips_for_missing_parts_fail_only_under_ci(tmp_path: Path, ci: str, summary: str) -> None:
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"CI": ci}
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "chat_testkit.strict_ci", "--rootdir", str(tmp_path), str(tmp_path),
        ],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert summary in run.stdout, run.stdout + run.stderr
    if ci:
        assert "CI=true: skipped for a missing part CI must install" in run.stdout
        assert "redis-server" in run.stdout


MODULE_SKIP = """
import pytest

playwright = pytest.importorskip("no_such_browser_driver")

def test_in_a_browser():
    assert False
"""


@pytest.mark.parametrize(("ci", "summary"), [
    ("true", "1 error"),
    ("", "1 skipped"),
])  # fmt: skip
def test_a_module_skipped_at_collection_fails_only_under_ci(
    tmp_path: Path, ci: str, summary: str
) -> None:
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"CI": ci}
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "chat_testkit.strict_ci", "--rootdir", str(tmp_path), str(tmp_path),
        ],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert summary in run.stdout, run.stdout + run.stderr
    if ci:
        assert "CI=true: skipped for a missing part CI must install" in run.stdout
        assert "no_such_browser_driver" in run.stdout
