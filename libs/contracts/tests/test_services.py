"""The one list of services, and the places that cannot read it say the same."""

from __future__ import annotations

import tomllib
from pathlib import Path

from chat_contracts import services

ROOT = Path(__file__).resolve().parents[3]


def test_each_service_has_its_package_directory() -> None:
    for service in services.SERVICES:
        assert (ROOT / "services" / service.name / "src" / service.package).is_dir()


def test_the_root_pyproject_lists_every_service() -> None:
    # TOML cannot import the list: this test is what makes forgetting a place loud.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for service in services.SERVICES:
        dist = f"chat-{service.name}"
        assert dist in project["project"]["dependencies"]
        assert dist in project["tool"]["uv"]["sources"]
        assert service.package in project["tool"]["mypy"]["packages"]
        assert f"services/{service.name}/src" in project["tool"]["mypy"]["mypy_path"]


def test_optional_services_and_the_gateway_setting() -> None:
    assert sorted(services.OPTIONAL) == ["calls", "media"]
    assert services.optional_setting(services.SERVICES) == "calls,media"
    core = [s for s in services.SERVICES if not s.optional]
    assert services.optional_setting(core) == ""


def test_the_test_stack_starts_every_runnable_service() -> None:
    from chat_testkit.stack import Stack

    runnable = tuple(s.name for s in services.SERVICES if s.runnable)
    assert Stack(workdir=ROOT).workers == runnable
    assert {"messages", "groups", "users"} <= set(runnable)
