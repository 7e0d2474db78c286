"""The GitHub Actions workflow: valid against the workflow schema, and it runs what
the project's own machines cannot (the MongoDB suites, the MongoDB bench variant).

The schema is the one `check-jsonschema` ships in its wheel (`vendor.github-workflows`):
no network.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(WORKFLOW.read_text())
    return loaded


def run_lines(job: dict[str, Any]) -> list[str]:
    return [line.strip() for step in job["steps"] for line in step.get("run", "").splitlines()]


def test_the_workflow_is_valid() -> None:
    done = check(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_validator_refuses_a_broken_workflow(tmp_path: Path) -> None:
    # The same check fails on a workflow whose job has no `runs-on` and a string for steps.
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    steps: ./taskw test\n")
    done = check(broken)
    assert done.returncode != 0
    assert "broken.yml" in done.stdout + done.stderr


def test_tests_run_where_docker_is(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    lines = run_lines(job)
    assert ".ci/run" in lines
    assert "./taskw test" in (ROOT / ".ci" / "run").read_text().splitlines()
    assert "docker version" in lines


def test_bench_runs_metric_3_on_a_mongodb_replica_set(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["bench-e2e"]
    assert job["runs-on"] == "ubuntu-latest"
    assert "directConnection=true" in job["env"]["CHAT_MONGODB_URL"]
    lines = run_lines(job)
    assert "./taskw bench --only e2e --reps 1" in lines
    started = next(line for line in lines if line.startswith("docker run"))
    assert "mongo:8" in started
    assert "--replSet rs0" in started
    assert any("rs.initiate" in line for line in lines)
    assert any("apt-get install -y -qq redis-server" in line for line in lines)
    assert any("actions/setup-node" in step.get("uses", "") for step in job["steps"])
