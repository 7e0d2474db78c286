"""The contract as client teams get it: served by the gateway, valid AsyncAPI 3.0, and
TypeScript types that type-check a client using every event with the stock
socket.io-client under `tsc --strict`."""

from __future__ import annotations

import copy
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chat_contracts.routes import ROUTES, SERVER_EVENTS
from chat_testkit.stack import Stack
from tests.integration.clients import contract
from tests.integration.clients.conftest import CLIENTS, GENERATED

#: The AsyncAPI initiative's own JSON Schema of AsyncAPI 3.0.0, from the npm package
#: @asyncapi/specs (pinned in clients/package-lock.json).
ASYNCAPI_SCHEMA = Path("node_modules/@asyncapi/specs/schemas/3.0.0.json")


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read()


@pytest.mark.parametrize(
    ("path", "file", "kind"),
    [
        ("/asyncapi.json", "asyncapi.json", "application/json"),
        ("/types/chat.d.ts", "types.ts", "application/typescript"),
    ],
)
def test_gateway_serves_the_generated_contract(
    clients_stack: Stack, path: str, file: str, kind: str
) -> None:
    status, content_type, body = _get(clients_stack.gateway_url(1) + path)
    assert status == 200
    assert content_type.startswith(kind)
    assert body == (GENERATED / file).read_bytes()


def _validator(node_modules: Path) -> jsonschema.protocols.Validator:
    schema = json.loads((CLIENTS / ASYNCAPI_SCHEMA).read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def test_asyncapi_document_is_valid_asyncapi_3(node_modules: Path) -> None:
    doc = contract.load(GENERATED / "asyncapi.json")
    found = _validator(node_modules).iter_errors(doc)
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in found]
    assert errors == []


@pytest.mark.parametrize(
    "breakage",
    ["operation action", "channel address type", "asyncapi version"],
)
def test_schema_check_refuses_a_broken_document(node_modules: Path, breakage: str) -> None:
    doc: dict[str, Any] = copy.deepcopy(contract.load(GENERATED / "asyncapi.json"))
    if breakage == "operation action":
        next(iter(doc["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording
    elif breakage == "channel address type":
        next(iter(doc["channels"].values()))["address"] = 42
    else:
        doc["asyncapi"] = "2.6.0"
    assert list(_validator(node_modules).iter_errors(doc)) != []


def test_document_lists_every_event_of_the_routes_table() -> None:
    doc = contract.load(GENERATED / "asyncapi.json")
    served = {e.name: e.served for e in contract.client_events(doc)}
    assert served == {r.event: r.served for r in ROUTES}
    assert {e.name for e in contract.server_events(doc)} == set(SERVER_EVENTS)


def _tsc(node: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tsc = CLIENTS / "node_modules" / "typescript" / "bin" / "tsc"
    return subprocess.run(
        [str(node), str(tsc), *args], capture_output=True, text=True, timeout=180, check=False
    )


def test_typescript_client_of_every_event_type_checks_strictly(node_modules: Path) -> None:
    doc = contract.load(GENERATED / "asyncapi.json")
    gen = CLIENTS / "contract" / ".gen"
    gen.mkdir(exist_ok=True)
    (gen / "every_event.ts").write_text(
        contract.every_event_ts(doc, "../../../libs/contracts/generated/types")
    )
    # A wrong payload must be refused, or the check above proves nothing.
    (gen / "wrong.ts").write_text(
        contract.every_event_ts(doc, "../../../libs/contracts/generated/types").replace(
            'payload("message:send")', '{ clientMessageId: 1, type: "TEXT" }', 1
        )
    )
    refused = _tsc(node_modules, "--strict", "--noEmit", "-p", str(CLIENTS / "contract"))
    assert refused.returncode != 0
    assert "wrong.ts" in refused.stdout
    assert "every_event.ts" not in refused.stdout, refused.stdout
    assert "sample.ts" not in refused.stdout, refused.stdout
    (gen / "wrong.ts").unlink()
    done = _tsc(node_modules, "--strict", "--noEmit", "-p", str(CLIENTS / "contract"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_committed_web_client_is_built_from_its_sources(node_modules: Path, tmp_path: Path) -> None:
    """clients/web/dist is committed (no build in CI or `./taskw up`): it must be what
    `npm run build` makes of the sources and the lock file now."""
    vite = CLIENTS / "node_modules" / "vite" / "bin" / "vite.js"
    out = tmp_path / "dist"
    done = subprocess.run(
        [
            str(node_modules),
            str(vite),
            "build",
            "--config",
            "web/vite.config.ts",
            "--outDir",
            str(out),
        ],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    committed = CLIENTS / "web" / "dist"

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert tree(out) == tree(committed), "stale clients/web/dist: run `npm run build` in clients/"
