"""pytest plugin: under `CI=true` a test skipped for a missing real part fails instead.

The developers' rule: a test that cannot find a real part (nats-server, redis-server,
coturn, Chromium...) is skipped with a reason naming it on a developer's machine, but
CI must have installed every part (`.ci/run`), so there the skip would hide a test that
never ran. MongoDB is the one exception: CI has no Docker engine, so its skips (reasons
starting with `MongoDB`) stay skips. Loaded by the root conftest (`pytest_plugins`).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest
from pluggy import Result

#: Skip reasons that stay skips under CI=true.
ALLOWED_IN_CI = ("MongoDB",)


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason of a skipped report (pytest keeps it as (file, line, reason))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Result[pytest.TestReport]]:
    """Turn a skip into a failure under CI=true unless its reason is allowed."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    _fail_unless_allowed(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, Result[pytest.CollectReport]]:
    """The same for a whole module skipped while collected (`pytest.importorskip`, a
    module-level `pytest.skip(..., allow_module_level=True)`)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped:
        return
    _fail_unless_allowed(report)


def _fail_unless_allowed(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = skip_reason(report)
    if reason.startswith(ALLOWED_IN_CI):
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true: skipped for a missing part CI must install (.ci/run): {reason}"
