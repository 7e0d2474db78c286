"""Under CI=true a skip for a missing real part fails; a MongoDB skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Not passed to the inner pytest: CI is the case's own; PYTEST_ADDOPTS could point it at
#: the outer run's --basetemp, which pytest empties at start.
ISOLATED = ("CI", "PYTEST_ADDOPTS")


def _pytest_with_strict_ci(tmp_path: Path, ci: str) -> str:
    """What an inner pytest with the plugin prints over the tests in `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED} | {"CI": ci}
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "chat_testkit.strict_ci", "--rootdir", str(tmp_path), str(tmp_path),
        ],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    return run.stdout + run.stderr


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


MODULE_SKIP = """
import pytest

playwright = pytest.importorskip("no_such_browser_driver")

def test_in_a_browser():
    assert False
"""


@pytest.mark.parametrize(("cases", "ci", "summary", "part"), [
    (CASES, "true", "1 failed, 1 passed, 1 skipped, 1 xfailed", "redis-server"),
    (CASES, "", "1 passed, 2 skipped, 1 xfailed", None),
    # A whole module skipped while collected (importorskip).
    (MODULE_SKIP, "true", "1 error", "no_such_browser_driver"),
    (MODULE_SKIP, "", "1 skipped", None),
])  # fmt: skip
def test_skips_for_missing_parts_fail_only_under_ci(
    tmp_path: Path, cases: str, ci: str, summary: str, part: str | None
) -> None:
    (tmp_path / "test_cases.py").write_text(cases)
    out = _pytest_with_strict_ci(tmp_path, ci)
    assert summary in out
    if part is not None:
        assert "CI=true: skipped for a missing part CI must install" in out
        assert part in out
