"""The routes table: one named row per event, served flags, and NOT_IMPLEMENTED."""

from __future__ import annotations

import re

from chat_contracts import ErrorCode, codegen, routes, services, subjects
from chat_contracts import client as c
from chat_contracts import server as o
from chat_contracts.routes import GATEWAY, NO_ACK, ROUTES, Route, unserved


def test_every_row_is_a_module_constant_named_after_its_event() -> None:
    # `Router.route(routes.MESSAGE_SEND, ...)` is how workers bind handlers: the name
    # must lead to the row.
    for route in ROUTES:
        name = re.sub(r"[^A-Za-z0-9]", "_", route.event).upper()
        assert getattr(routes, name) is route


def test_every_domain_is_a_service_or_the_gateway() -> None:
    assert {r.domain for r in ROUTES} <= set(services.BY_NAME) | {GATEWAY}


def test_no_ack_rows() -> None:
    no_ack = {r.event for r in ROUTES if not r.ack}
    assert no_ack == {"typing:start", "typing:stop", "call:ice-candidate"}
    assert routes.TYPING_START.result is NO_ACK


def test_unserved_rows_and_left_out_optional_services_are_not_implemented() -> None:
    served_call = Route("call:offer", c.CallOffer, subjects.CALLS, "offer", o.CallOfferResult)
    unserved_edit = Route(
        "message:edit", c.MessageEdit, subjects.MESSAGES, "edit", o.MessageResult, served=False
    )
    table = (routes.MESSAGE_SEND, unserved_edit, served_call)
    assert unserved((), table) == {"message:edit", "call:offer"}
    assert unserved(("calls",), table) == {"message:edit"}


def test_today_every_unserved_row_is_refused_whatever_is_deployed() -> None:
    # The 23 events without a worker handler when the table was made honest.
    never = unserved(services.OPTIONAL)
    assert never == {r.event for r in ROUTES if not r.served}
    assert "message:send" not in never
    assert {r.event for r in ROUTES if r.domain == subjects.CALLS} <= unserved(())


def test_not_implemented_is_a_code_in_the_generated_contract() -> None:
    assert ErrorCode.NOT_IMPLEMENTED.value == "NOT_IMPLEMENTED"
    assert '"NOT_IMPLEMENTED"' in codegen.rendered()["types.ts"]
    ops = codegen.asyncapi()["operations"]
    for route in ROUTES:
        op = ops["on_" + re.sub(r"[^A-Za-z0-9]", "_", route.event)]
        assert op.get("x-served", True) is route.served, route.event
    assert "x-served" not in ops["on_message_send"]
    assert "x-served" not in ops["on_message_edit"]
