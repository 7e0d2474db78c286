"""The published AsyncAPI document and TypeScript types match the Structs."""

from __future__ import annotations

from chat_contracts import codegen
from chat_contracts.routes import ROUTES, SERVER_EVENTS


def test_generated_files_are_current() -> None:
    for name, text in codegen.rendered().items():
        on_disk = (codegen.GENERATED / name).read_text()
        assert on_disk == text, f"{name} is stale: run `python -m chat_contracts.codegen`"


def test_every_event_has_a_channel() -> None:
    doc = codegen.asyncapi()
    addresses = {ch["address"] for ch in doc["channels"].values()}
    assert addresses == {r.event for r in ROUTES} | set(SERVER_EVENTS)
    assert doc["components"]["schemas"]["SocketMessage"]["required"][-5:] == [
        "isEdited",
        "isDeleted",
        "reactions",
        "pinned",
        "rev",
    ]
