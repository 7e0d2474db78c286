"""Generate the AsyncAPI 3 document and TypeScript types from the contracts.

`python -m chat_contracts.codegen` rewrites `libs/contracts/generated/`; a test fails
when those files differ from what this module produces, so the published contract can
never drift from the Structs the services use.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import msgspec

from chat_contracts.errors import ErrorCode
from chat_contracts.routes import ROUTES, SERVER_EVENTS

GENERATED = Path(__file__).resolve().parents[2] / "generated"
REF = "#/components/schemas/{name}"


def _all_types() -> list[Any]:
    types: list[Any] = []
    for route in ROUTES:
        types.append(route.payload)
        if route.ack:
            types.append(route.result)
    types.extend(SERVER_EVENTS.values())
    return list(dict.fromkeys(types))


def _schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_all_types(), ref_template=REF)
    return dict(sorted(components.items()))


def _channel_id(event: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", event)


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the Socket.IO protocol."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    def message(name: str, event: str, schema: str, summary: str) -> None:
        messages[name] = {
            "name": event,
            "summary": summary,
            "payload": {"$ref": REF.format(name=schema)},
        }

    for route in ROUTES:
        cid = _channel_id(route.event)
        channel = channels.setdefault(cid, {"address": route.event, "messages": {}})
        name = f"{cid}_request"
        message(name, route.event, route.payload.__name__, f"client→server `{route.event}`")
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        op: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{name}"}],
        }
        if not route.served:
            # No worker handles it yet: the gateway acks NOT_IMPLEMENTED.
            op["x-served"] = False
        if route.ack:
            ack = f"{cid}_ack"
            message(ack, route.event, route.result.__name__, "ack result (merged next to status)")
            channel["messages"][ack] = {"$ref": f"#/components/messages/{ack}"}
            op["reply"] = {"messages": [{"$ref": f"#/channels/{cid}/messages/{ack}"}]}
        operations[f"on_{cid}"] = op
    for event, kind in SERVER_EVENTS.items():
        cid = _channel_id(event)
        channel = channels.setdefault(cid, {"address": event, "messages": {}})
        name = f"{cid}_event"
        message(name, event, kind.__name__, f"server→client `{event}`")
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        operations[f"emit_{cid}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{name}"}],
        }
    schemas = _schemas()
    schemas["ErrorCode"] = {"type": "string", "enum": [c.value for c in ErrorCode]}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Chat realtime API (Socket.IO v5, default namespace)",
            "version": "1.0.0",
            "description": "Generated from libs/contracts by chat_contracts.codegen. Do not edit.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _ts(schema: dict[str, Any], optional: bool = False) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        parts = [_ts(s) for s in schema["anyOf"] if not (optional and s.get("type") == "null")]
        return " | ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        inner = _ts(schema.get("items", {}))
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if kind == "object":
        return f"Record<string, {_ts(schema.get('additionalProperties', {}))}>"
    return {"string": "string", "integer": "number", "number": "number", "boolean": "boolean",
            "null": "null"}.get(str(kind), "unknown")  # fmt: skip


def typescript() -> str:
    """TypeScript declarations of every payload, plus the event maps for socket.io-client."""
    lines = [
        "// Generated from libs/contracts by chat_contracts.codegen. Do not edit.",
        "",
        "export type ErrorCode = " + " | ".join(json.dumps(c.value) for c in ErrorCode) + ";",
        "",
        "export interface Ack {",
        "  status: 'ok' | 'error' | 'retry';",
        "  error?: string;",
        "  code?: ErrorCode;",
        "  field?: string;",
        "  retryAfter?: number;",
        "  retryCount?: number;",
        "}",
        "",
    ]
    for name, schema in _schemas().items():
        if schema.get("type") != "object" or "properties" not in schema:
            lines.append(f"export type {name} = {_ts(schema)};\n")
            continue
        required = set(schema.get("required", []))
        doc = schema.get("description") or schema.get("title")
        if doc:
            lines.append("/** " + " ".join(str(doc).split()) + " */")
        lines.append(f"export interface {name} {{")
        for prop, sub in schema["properties"].items():
            opt = prop not in required
            lines.append(f"  {prop}{'?' if opt else ''}: {_ts(sub, optional=opt)};")
        lines.append("}\n")
    lines.append("export interface ClientToServerEvents {")
    for route in ROUTES:
        cb = f", ack: (ack: Ack & Partial<{route.result.__name__}>) => void" if route.ack else ""
        lines.append(
            f"  {json.dumps(route.event)}: (payload: {route.payload.__name__}{cb}) => void;"
        )
    lines.append("}\n")
    lines.append("export interface ServerToClientEvents {")
    for event, kind in SERVER_EVENTS.items():
        lines.append(f"  {json.dumps(event)}: (payload: {kind.__name__}) => void;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def rendered() -> dict[str, str]:
    """File name → content of everything generated."""
    return {
        "asyncapi.json": json.dumps(asyncapi(), indent=2, ensure_ascii=False) + "\n",
        "types.ts": typescript(),
    }


def main() -> None:
    """Write the generated files (or, with --check, exit 1 when they are stale)."""
    check = "--check" in sys.argv[1:]
    stale = []
    GENERATED.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        path = GENERATED / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
            if not check:
                path.write_text(text)
    if check and stale:
        print(f"stale: {', '.join(stale)}; run python -m chat_contracts.codegen", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
