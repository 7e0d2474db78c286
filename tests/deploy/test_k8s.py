"""deploy/k8s checked offline: every overlay renders, validates against the Kubernetes
schemas (`kubernetes-validate --strict`), and holds the policies a platform team
expects (deploy/k8s/README.md). The process-level check — every Deployment's command
starts — is in test_entrypoints.py.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from chat_contracts import services
from chat_gateway.settings import GatewaySettings
from chat_media.http import Urls
from chat_runtime.settings import BaseSettings, SettingsError, load_settings
from chat_users.notifications import NotificationsSettings
from tests.deploy.k8s import (
    CUSTOM_KINDS,
    K8S,
    KUBERNETES_VERSION,
    OVERLAYS,
    PUSH_SECRET,
    Obj,
    by_name,
    command_module,
    container_env,
    containers,
    duration_s,
    of_kind,
    prepare_tree,
    render,
    secret_keys,
)

#: Processes deployed beside the services list: name -> the module `python -m` runs.
EXTRA_PROCESSES = {"notifications": "chat_users.notifications"}
#: The probe timeouts a platform expects: a few seconds, never a hair trigger.
PROBE_TIMEOUT_S = (1, 5)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_tree(tmp_path_factory.mktemp("k8s"))


@pytest.fixture(scope="module")
def rendered(tree: Path) -> dict[str, list[Obj]]:
    return {overlay: render(tree, overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def deployments(rendered: dict[str, list[Obj]], overlay: str) -> list[Obj]:
    found = of_kind(rendered[overlay], "Deployment")
    assert found, f"{overlay} has no Deployment"
    return found


def main_module(module: str) -> str:
    """What `python -m <module>` runs: a package's `__main__`, or the module itself."""
    spec = importlib.util.find_spec(module)
    is_package = spec is not None and spec.submodule_search_locations is not None
    return f"{module}.__main__" if is_package else module


def has_main(module: str) -> bool:
    """Whether `python -m <module>` has something to run."""
    try:
        return importlib.util.find_spec(main_module(module)) is not None
    except ModuleNotFoundError:
        return False


def settings_class(module: str) -> type[BaseSettings]:
    """The settings Struct a service's `__main__` loads (its most derived one)."""
    main = importlib.import_module(main_module(module))
    kinds = {
        value
        for value in vars(main).values()
        if isinstance(value, type) and issubclass(value, BaseSettings)
    }
    leaves = [k for k in kinds if not any(o is not k and issubclass(o, k) for o in kinds)]
    assert len(leaves) == 1, f"{module}.__main__ has settings {leaves}"
    return leaves[0]


# --------------------------------------------------------------------------- schema


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    unchecked = set()
    for obj in rendered[overlay]:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.add((obj["apiVersion"], obj["kind"]))
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {path}: {exc}")
    assert unchecked <= CUSTOM_KINDS, f"schema-less kinds not listed: {unchecked - CUSTOM_KINDS}"


def test_everything_lives_in_the_chat_namespace(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for obj in rendered[overlay]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "chat", obj["metadata"]["name"]


# --------------------------------------------------------------------------- pods


def test_pods_run_restricted(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for deployment in deployments(rendered, overlay):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "chat", name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in containers(deployment):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context.get("privileged") is not True, name


def test_namespace_enforces_restricted_pod_security(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    (namespace,) = of_kind(rendered[overlay], "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (account,) = of_kind(rendered[overlay], "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_every_container_has_three_probes_and_limits(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for deployment in deployments(rendered, overlay):
        for container in containers(deployment):
            ports = {p["name"] for p in container["ports"]}
            for probe, path in (
                ("livenessProbe", "/healthz"),
                ("startupProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
            ):
                spec = container[probe]
                assert spec["httpGet"]["path"] == path, (container["name"], probe)
                assert spec["httpGet"]["port"] in ports, (container["name"], probe)
                low, high = PROBE_TIMEOUT_S
                assert low <= spec["timeoutSeconds"] <= high, (container["name"], probe)
            # The startup probe covers a slow NATS at boot: at least 30 s of tries.
            startup = container["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), container["name"]


def test_every_deployment_has_a_disruption_budget(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    budgets = of_kind(rendered[overlay], "PodDisruptionBudget")
    covered = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for b in budgets}
    for deployment in deployments(rendered, overlay):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] in covered, deployment["metadata"]["name"]


def test_no_replicas_beside_an_autoscaler(rendered: dict[str, list[Obj]], overlay: str) -> None:
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(rendered[overlay], "HorizontalPodAutoscaler")
    }
    for deployment in deployments(rendered, overlay):
        name = deployment["metadata"]["name"]
        if name in scaled:
            assert "replicas" not in deployment["spec"], f"{overlay}: {name} has replicas and HPA"
        if overlay != "dev":
            assert name in scaled, f"{overlay}: {name} has no HPA"


def test_prod_spreads_pods_over_zones_and_nodes(rendered: dict[str, list[Obj]]) -> None:
    for deployment in deployments(rendered, "prod"):
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in spread}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
        for constraint in spread:
            # Without the service's own label every chat pod would count as one group.
            assert "app.kubernetes.io/name" in constraint["matchLabelKeys"]


def test_prod_gateways_scale_on_sockets_per_pod(rendered: dict[str, list[Obj]]) -> None:
    hpa = by_name(rendered["prod"], "HorizontalPodAutoscaler")["gateway"]
    metrics = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert metrics == {"chat_gateway_sockets"}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


@pytest.mark.parametrize("overlay", ["prod", "full"])
def test_prod_pins_the_image_by_digest(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for deployment in deployments(rendered, overlay):
        for container in containers(deployment):
            assert "@sha256:" in container["image"], container["image"]


def test_every_deployment_runs_the_built_image(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for deployment in deployments(rendered, overlay):
        for container in containers(deployment):
            assert container["image"].startswith("registry.example.com/chat/chat-backend")


def test_prod_is_monitored(rendered: dict[str, list[Obj]]) -> None:
    (monitor,) = of_kind(rendered["prod"], "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    for deployment in deployments(rendered, "prod"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]
        for container in containers(deployment):
            assert endpoint["port"] in {p["name"] for p in container["ports"]}


# --------------------------------------------------------------------------- secrets


def test_no_secret_values_are_committed() -> None:
    for path in K8S.rglob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and not path.name.startswith("kustomization"):
                assert obj.get("kind") != "Secret", f"{path} ships a Secret"
    ignored = (K8S / "overlays" / "dev" / ".gitignore").read_text().split()
    assert "secrets.env" in ignored


def test_prod_renders_no_secret_and_dev_only_the_generated_one(
    rendered: dict[str, list[Obj]],
) -> None:
    assert of_kind(rendered["prod"], "Secret") == []
    assert of_kind(rendered["full"], "Secret") == []
    (external,) = of_kind(rendered["prod"], "ExternalSecret")
    assert external["spec"]["target"]["name"] == "chat-secrets"
    (generated,) = of_kind(rendered["dev"], "Secret")
    # The hash suffix: a changed secret rolls the pods that reference it.
    assert generated["metadata"]["name"].startswith("chat-secrets-")


# --------------------------------------------------------------------------- settings


def test_every_required_setting_is_supplied(
    rendered: dict[str, list[Obj]], tree: Path, overlay: str, tmp_path: Path
) -> None:
    """Each Deployment's environment loads its service's settings (what `main` would do)."""
    keys = secret_keys(rendered[overlay], tree, overlay)
    test_secrets = {key: "s3cret-value-for-the-test-" + "x" * 32 for key in keys}
    for deployment in deployments(rendered, overlay):
        for container in containers(deployment):
            secret_dir = tmp_path / container["name"]
            env = dict(
                container_env(rendered[overlay], deployment, container, test_secrets, secret_dir)
            )
            module = command_module(container)
            if overlay == "full" and not has_main(module):
                # A component whose service is still to come: the real overlays keep it
                # off (test_entrypoints.py fails the moment one enables it).
                continue
            kind = settings_class(module)
            try:
                load_settings(kind, env)
            except SettingsError as exc:
                pytest.fail(f"{overlay}: {container['name']}: {exc}")


def test_prod_is_websocket_only_on_mongo(rendered: dict[str, list[Obj]]) -> None:
    (config,) = of_kind(rendered["prod"], "ConfigMap")
    assert config["data"]["CHAT_TRANSPORTS"] == "websocket"
    assert config["data"]["CHAT_STORE"] == "mongo"
    (full,) = of_kind(rendered["full"], "ConfigMap")
    assert full["data"]["CHAT_TRANSPORTS"] == "websocket,polling"


# --------------------------------------------------------------------------- network


def test_network_policies_deny_by_default(rendered: dict[str, list[Obj]], overlay: str) -> None:
    policies = by_name(rendered[overlay], "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), f"{name} admits ingress from anywhere"
            assert rule.get("ports"), f"{name} admits every port"
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{name} allows egress anywhere"
            assert rule.get("ports"), f"{name} allows every port"


def test_only_the_edge_reaches_gateway_and_media(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    reachable = set()
    for policy in of_kind(rendered[overlay], "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if any("chat-edge" in str(peer) for peer in rule["from"]):
                reachable.add(
                    policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                )
    deployed = {d["metadata"]["name"] for d in deployments(rendered, overlay)}
    assert reachable == {"gateway", "media"} & deployed


# --------------------------------------------------------------------------- edge


def test_the_edge_is_gateway_api_with_long_route_timeouts(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    assert of_kind(objects, "Ingress") == [], "ingress-nginx was retired: Gateway API only"
    (gateway,) = of_kind(objects, "Gateway")
    routes = by_name(objects, "HTTPRoute")
    (rule,) = routes["socketio"]["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/socket.io/"}}]
    assert [b["name"] for b in rule["backendRefs"]] == ["gateway"]
    parents = {p["name"] for r in routes.values() for p in r["spec"]["parentRefs"]}
    assert parents == {gateway["metadata"]["name"]}
    (config,) = of_kind(objects, "ConfigMap")
    settings = load_settings(GatewaySettings, {**config["data"], "CHAT_JWT_SECRET": "x" * 48})
    # A socket may stay silent for ping interval + ping timeout; the edge must outlast it.
    silent_s = (settings.ping_interval_ms + settings.ping_timeout_ms) / 1000
    for name in ("request", "backendRequest"):
        assert duration_s(rule["timeouts"][name]) > silent_s
    service = by_name(objects, "Service")["gateway"]
    assert [p["appProtocol"] for p in service["spec"]["ports"]] == ["kubernetes.io/ws"]
    if "media" in {d["metadata"]["name"] for d in deployments(rendered, overlay)}:
        (media,) = routes["media"]["spec"]["rules"]
        assert [b["name"] for b in media["backendRefs"]] == ["media"]
        # Every URL the media service hands out or serves reaches it, and nothing else.
        urls = Urls("")
        served = [urls.upload("u1"), urls.tus("u1"), urls.media("m1"), urls.thumbnail("m1")]
        for path in [*served, "/v1/openapi.json"]:
            assert any(path_matches(m["path"], path) for m in media["matches"]), path
        assert not any(path_matches(m["path"], "/socket.io/") for m in media["matches"])
    if overlay == "full":
        assert rule["sessionPersistence"]["type"] == "Cookie"
    else:
        assert "sessionPersistence" not in rule


def path_matches(match: Obj, path: str) -> bool:
    """Whether an HTTPRoute path match takes `path` (PathPrefix: whole segments)."""
    value: str = match["value"]
    if match["type"] == "Exact":
        return path == value
    assert match["type"] == "PathPrefix", match
    return path == value or path.startswith(value.rstrip("/") + "/")


def test_dependency_manifests_validate() -> None:
    """Redis and coturn resources validate; the MongoDB resource is the operator's CR."""
    kinds = set()
    for path in (K8S / "dependencies").rglob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj or "apiVersion" not in obj or obj["kind"] == "Kustomization":
                continue  # Helm values files
            kinds.add(obj["kind"])
            if obj["kind"] == "MongoDBCommunity":
                assert obj["spec"]["type"] == "ReplicaSet"
                assert obj["spec"]["members"] >= 3
                continue
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert {"StatefulSet", "DaemonSet", "MongoDBCommunity"} <= kinds
    nats = yaml.safe_load((K8S / "dependencies" / "nats" / "values.yaml").read_text())
    assert nats["config"]["cluster"]["replicas"] == 3
    assert nats["config"]["jetstream"]["enabled"] is True


# --------------------------------------------------------------------------- services


def test_the_deployments_are_the_services_list(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """Base deploys the gateway and every core service; each optional one is a component."""
    names = {d["metadata"]["name"] for d in deployments(rendered, overlay)}
    core = {s.name for s in services.SERVICES if not s.optional} | set(EXTRA_PROCESSES)
    assert {"gateway"} | core <= names
    assert names - {"gateway"} - core <= services.OPTIONAL
    if overlay == "full":
        assert names >= services.OPTIONAL
    for name in names - {"gateway"}:
        (deployment,) = [d for d in deployments(rendered, overlay) if d["metadata"]["name"] == name]
        (container,) = containers(deployment)
        expected = EXTRA_PROCESSES.get(name) or services.BY_NAME[name].package
        assert command_module(container) == expected
    for name in services.OPTIONAL:
        assert (K8S / "components" / name / "kustomization.yaml").is_file()


def test_the_gateway_knows_which_optional_services_run(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    (config,) = of_kind(rendered[overlay], "ConfigMap")
    listed = {s for s in config["data"]["CHAT_OPTIONAL_SERVICES"].split(",") if s}
    running = {d["metadata"]["name"] for d in deployments(rendered, overlay)}
    assert listed == running & services.OPTIONAL


def test_every_service_has_a_nats_password_in_both_secrets(
    rendered: dict[str, list[Obj]], tree: Path
) -> None:
    users = ["gateway", *services.BY_NAME, *EXTRA_PROCESSES]
    wanted = {f"NATS_PASSWORD_{name.upper()}" for name in users}
    for overlay in ("dev", "prod"):
        assert wanted <= secret_keys(rendered[overlay], tree, overlay), overlay


def test_egress_goes_only_to_dns_and_the_three_dependencies(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """Pods reach DNS, NATS, Redis and its sentinels (gateway, calls, users, notifications)
    and MongoDB (workers), nothing else."""
    flows = set()
    for policy in of_kind(rendered[overlay], "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    target = peer["ipBlock"]["cidr"]
                else:
                    target = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for port in rule["ports"]:
                    flows.add((policy["metadata"]["name"], target, port["port"]))
    # The push providers (components/push): HTTPS out of the cluster, notifications only.
    push = {("egress-push", "0.0.0.0/0", 443)} if overlay == "full" else set()
    assert flows == {
        ("egress-dns-nats", "kube-system", 53),
        ("egress-dns-nats", "nats", 4222),
        ("egress-redis", "redis", 6379),
        ("egress-redis", "redis", 26379),
        ("egress-mongodb", "mongodb", 27017),
        *push,
    }
    if push:
        policy = by_name(rendered[overlay], "NetworkPolicy")["egress-push"]["spec"]
        assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "notifications"}}
        (rule,) = policy["egress"]
        (peer,) = rule["to"]
        assert "10.0.0.0/8" in peer["ipBlock"]["except"]  # not the cluster's own pods
    redis = by_name(rendered[overlay], "NetworkPolicy")["egress-redis"]["spec"]["podSelector"]
    (expression,) = redis["matchExpressions"]
    assert sorted(expression["values"]) == ["calls", "gateway", "notifications", "users"]


def test_push_provider_keys_are_files_of_their_own_secret(
    rendered: dict[str, list[Obj]], tree: Path, tmp_path: Path
) -> None:
    """components/push (on in `full`): every provider's key path is a file of the mounted
    `chat-push` Secret, and with the ids in the ConfigMap no provider is left on `log`."""
    objects = rendered["full"]
    deployment = by_name(objects, "Deployment")["notifications"]
    (container,) = containers(deployment)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    files = {
        f"{mount['mountPath']}/{item['path']}"
        for mount in container["volumeMounts"]
        if volumes[mount["name"]].get("secret", {}).get("secretName") == PUSH_SECRET
        for item in volumes[mount["name"]]["secret"]["items"]
    }
    keys = secret_keys(objects, tree, "full")
    env = dict(
        container_env(objects, deployment, container, dict.fromkeys(keys, "x" * 48), tmp_path)
    )
    settings = load_settings(NotificationsSettings, env)
    paths = [
        settings.push_fcm_credentials,
        settings.push_apns_key_file,
        settings.push_vapid_private_key,
    ]
    assert sorted(paths) == sorted(files), (paths, files)
    ids = ("fcm_project", "vapid_subject", "apns_key_id", "apns_team_id", "apns_topic")
    assert [name for name in ids if not getattr(settings, f"push_{name}")] == []
    for overlay in ("dev", "prod"):
        # Opt-in: without the component the worker logs pushes and needs no Secret.
        assert "egress-push" not in by_name(rendered[overlay], "NetworkPolicy")
