"""The Dockerfile's recipe, run without Docker: the same two `uv sync` steps, the same inputs.

Step 1 sees only the manifests (pyproject files and uv.lock) and must install every
third-party dependency; step 2 adds the sources and installs our packages as wheels.
The result must start every service module and hold no test kit or dev tool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.k8s import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
DEPENDENCIES = "uv sync --locked --no-dev --no-install-workspace"
PACKAGES = "uv sync --locked --no-dev --no-editable"


def uv(args: str, cwd: Path, venv: Path) -> None:
    uv_bin = str(Path(sys.executable).parent / "uv")
    done = subprocess.run(
        [uv_bin, *args.split()[1:], "--offline", "--quiet", "--python", sys.executable],
        cwd=cwd,
        # The Dockerfile's ENV for the build stage.
        env={
            **os.environ,
            "UV_PROJECT_ENVIRONMENT": str(venv),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_COMPILE_BYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args}:\n{done.stderr}"


def test_the_dependency_layer_comes_before_the_sources() -> None:
    steps = [line.strip() for line in DOCKERFILE.splitlines()]
    deps = next(i for i, line in enumerate(steps) if line == DEPENDENCIES)
    sources = next(i for i, line in enumerate(steps) if line.startswith("COPY libs"))
    packages = next(i for i, line in enumerate(steps) if line == PACKAGES)
    assert deps < sources < packages
    assert "UV_COMPILE_BYTECODE=1" in DOCKERFILE
    # A numeric non-root user, as runAsNonRoot can verify.
    assert re.search(r"^USER [1-9]\d*:[1-9]\d*$", DOCKERFILE, re.MULTILINE)


def test_the_recipe_installs_every_service_and_no_test_kit(tmp_path: Path) -> None:
    src, venv = tmp_path / "src", tmp_path / "venv"
    src.mkdir()
    # The manifests stage: root pyproject, lock, and each member's pyproject only.
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "uv.lock", src)
    for manifest in [*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]:
        dest = src / manifest.relative_to(ROOT)
        dest.parent.mkdir(parents=True)
        shutil.copy(manifest, dest)
    uv(DEPENDENCIES, src, venv)
    python = venv / "bin" / "python"
    probe = "import msgspec, nats, pymongo, redis, socketio, prometheus_client, opentelemetry.sdk"
    assert subprocess.run([python, "-c", probe], check=False).returncode == 0
    # The sources stage (tests are excluded by .dockerignore; harmless here).
    for tree in ("libs", "services"):
        for member in (ROOT / tree).iterdir():
            if (member / "src").is_dir():
                shutil.copytree(member / "src", src / tree / member.name / "src")
    uv(PACKAGES, src, venv)
    # Wheels, compiled at install (before anything imported them), no source tree.
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert list(site.glob("chat_*.pth")) == []
    assert list((site / "chat_gateway" / "__pycache__").glob("*.pyc"))
    services = sorted(p.name for p in ROOT.glob("services/*/src/chat_*"))
    code = "; ".join(f"import {name}" for name in services) + "; import chat_gateway.__main__"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for absent in ("chat_testkit", "pytest", "mypy", "testcontainers"):
        done = subprocess.run([python, "-c", f"import {absent}"], capture_output=True, check=False)
        assert done.returncode != 0, f"{absent} is in the image"
