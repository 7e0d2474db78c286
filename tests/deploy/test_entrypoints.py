"""Every Deployment's command starts, from a virtualenv with only its own locked dependencies.

For each `python -m chat_<x>` that an overlay deploys: `uv sync --package <member>`
(frozen, offline, from uv's cache: ~0.4 s) into a fresh virtualenv, then the command runs
there with the Deployment's own environment — ConfigMap and env of the dev overlay,
the Secret's keys filled with test values — pointed at a real nats-server that enforces
the generated per-service users and a real redis-server with the `chat` ACL user. It
must become ready on its ops port with no NATS permission violation, and exit 0 on
SIGTERM. So a service importing what it does not declare fails, a Deployment missing a
setting fails, a component whose module has no `__main__` fails the moment an overlay
enables it, and a permission the service needs but the NATS users lack fails.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_runtime import nats_auth
from chat_testkit.servers import (
    Missing,
    NatsServer,
    RedisServer,
    ServiceProcess,
    nats_with_users,
)
from tests.deploy.k8s import (
    ROOT,
    Obj,
    command_module,
    container_env,
    containers,
    env_file,
    of_kind,
    prepare_tree,
    render,
)

#: Overlays whose Deployments must start here (prod's differ only in store and replicas,
#: and test_k8s.py checks that its settings load).
STARTED_OVERLAYS = ("dev", "prod")
READY_TIMEOUT_S = 20.0


@functools.cache
def deployed() -> dict[str, tuple[Obj, Obj, list[Obj]]]:
    """module -> (its Deployment and container in dev, the dev objects), for every module a
    real overlay deploys (started with dev's environment: SQLite, no MongoDB here)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = prepare_tree(Path(tmp))
        rendered = {overlay: render(tree, overlay) for overlay in STARTED_OVERLAYS}
    modules = {
        overlay: {
            command_module(c): (d, c) for d in of_kind(objects, "Deployment") for c in containers(d)
        }
        for overlay, objects in rendered.items()
    }
    assert modules["prod"].keys() == modules["dev"].keys(), "dev and prod deploy other services"
    return {module: (d, c, rendered["dev"]) for module, (d, c) in modules["dev"].items()}


def member_of(module: str) -> str:
    """The workspace member (pyproject name) whose source holds `module`."""
    for pyproject in ROOT.glob("*/*/pyproject.toml"):
        if (pyproject.parent / "src" / module).is_dir():
            name: str = tomllib.loads(pyproject.read_text())["project"]["name"]
            return name
    raise AssertionError(f"no workspace member provides {module}")


@pytest.fixture(scope="module")
def test_secrets() -> dict[str, str]:
    example = env_file(ROOT / "deploy/k8s/overlays/dev/secrets.env.example")
    return {
        key: nats_auth.new_password() if key.startswith("NATS_") else secrets.token_urlsafe(36)
        for key in example
    }


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, test_secrets: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """(nats URL, redis URL): NATS with the generated users, Redis with the ACL user."""
    workdir = tmp_path_factory.mktemp("entry-servers")
    passwords = {
        a.user: test_secrets[nats_auth.password_variable(a.user)] for a in nats_auth.access_list()
    }
    started: list[NatsServer | RedisServer] = []
    try:
        started.append(nats_with_users(workdir, passwords))
        acl = ("--user", "chat", "on", f">{test_secrets['REDIS_PASSWORD']}", "~*", "&*", "+@all")
        started.append(RedisServer(workdir, acl))
    except Missing as exc:
        for server in started:
            server.stop()
        pytest.skip(str(exc))
    yield started[0].url, started[1].url
    for server in started:
        server.stop()


def fresh_venv(member: str, dest: Path) -> Path:
    """A virtualenv with `member` and its locked dependencies only; its python."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        raise AssertionError("uv is not in .venv/bin (./taskw installs it)")
    done = subprocess.run(
        [
            str(uv), "sync", "--package", member, "--frozen", "--no-dev", "--offline",
            "--python", sys.executable, "--quiet",
        ],
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(dest)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"uv sync --package {member} failed:\n{done.stderr}"
    return dest / "bin" / "python"


def wait_ready(proc: ServiceProcess) -> str:
    """Poll the process's ops /readyz until 200; its ops URL."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, f"{proc.name} exited:\n{proc.tail()}"
        with contextlib.suppress(RuntimeError, urllib.error.URLError, OSError):
            url = proc.ops_url
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return url
        time.sleep(0.05)
    raise AssertionError(f"{proc.name} not ready after {READY_TIMEOUT_S} s:\n{proc.tail()}")


@pytest.mark.parametrize("module", sorted(deployed()))
def test_the_deployment_command_starts_with_only_its_declared_dependencies(
    module: str,
    servers: tuple[str, str],
    test_secrets: dict[str, str],
    tmp_path: Path,
) -> None:
    deployment, container, objects = deployed()[module]
    python = fresh_venv(member_of(module.split(".")[0]), tmp_path / "venv")
    nats_url, redis_url = servers
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "VIRTUAL_ENV"))}
    env.update(container_env(objects, deployment, container, test_secrets, tmp_path / "secrets"))
    # Where the cluster's addresses are, the test's servers are; the rest is the pod's.
    env.update(
        CHAT_NATS_URL=nats_url,
        # A database of its own: no test sees another's state (a gateway's heartbeat).
        CHAT_REDIS_URL=f"{redis_url}?db={sorted(deployed()).index(module) + 1}",
        CHAT_SQLITE_DIR=str(tmp_path / "data"),
        CHAT_HEALTH_HOST="127.0.0.1",
        CHAT_HEALTH_PORT="0",
        CHAT_GATEWAY_HOST="127.0.0.1",
        CHAT_GATEWAY_PORT="0",
        CHAT_MEDIA_HOST="127.0.0.1",
        CHAT_MEDIA_PORT="0",
        CHAT_MEDIA_DIR=str(tmp_path / "media"),
    )
    assert container["command"][:2] == ["python", "-m"]
    service = module.removeprefix("chat_")
    proc = ServiceProcess(service, env, tmp_path, container["name"], python=str(python))
    try:
        wait_ready(proc)
        log = proc.log.read_text(errors="replace")
        assert "ermissions violation" not in log.lower(), log
    finally:
        # As long as Kubernetes waits (terminationGracePeriodSeconds) before SIGKILL.
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        code = proc.stop(timeout=grace)
    assert code == 0, proc.tail()
