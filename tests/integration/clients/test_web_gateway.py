"""What the web gateway serves over HTTP: the page only with CHAT_WEB_CLIENT=1, the
development sign-in only with CHAT_DEV_MODE=1, and tokens from it that the socket accepts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from chat_testkit.client import ChatClient
from chat_testkit.servers import ServiceProcess
from chat_testkit.stack import Stack
from tests.integration.clients.conftest import WebGateway, free_port


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_page_and_config_only_where_the_web_client_is_on(
    clients_stack: Stack, web_gateway: WebGateway
) -> None:
    status, page = _http(web_gateway.url + "/")
    assert status == 200
    assert b'<script type="module"' in page
    script = page.split(b'src="', 1)[1].split(b'"', 1)[0].decode()
    assert _http(web_gateway.url + script)[0] == 200
    status, config = _http(web_gateway.url + "/web-config.json")
    assert status == 200
    assert json.loads(config)["devMode"] is True
    assert _http(clients_stack.gateway_url(0) + "/")[0] == 404
    assert _http(clients_stack.gateway_url(0) + "/web-config.json")[0] == 404


def test_dev_token_only_in_dev_mode(clients_stack: Stack, web_gateway: WebGateway) -> None:
    assert _http(clients_stack.gateway_url(0) + "/dev/token", {"userId": "mallory"})[0] == 404
    status, body = _http(web_gateway.url + "/dev/token", {"userId": "a.b>"})
    assert status == 400
    assert json.loads(body)["code"] == "VALIDATION_ERROR"
    status, body = _http(web_gateway.url + "/dev/token", {"name": "no id"})
    assert status == 400
    assert b"userId" in body


@pytest.mark.asyncio
async def test_a_dev_token_opens_a_socket_as_that_user(
    clients_stack: Stack, web_gateway: WebGateway
) -> None:
    status, body = _http(web_gateway.url + "/dev/token", {"userId": "dev-dora", "name": "Dora"})
    assert status == 200
    minted = json.loads(body)
    assert minted["userId"] == "dev-dora"
    client = ChatClient("dora")
    await client.connect(clients_stack.gateway_url(1), minted["token"])
    try:
        ack = await client.call("group:create", {"name": "dora's", "memberIds": []})
        assert ack["status"] == "ok"
        assert ack["group"]["createdBy"] == "dev-dora"
    finally:
        await client.close()


def test_uploads_answer_unavailable_while_media_is_down(
    clients_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    closed = free_port()  # nothing listens there
    proc = ServiceProcess(
        "gateway",
        clients_stack.env(
            CHAT_GATEWAY_ID="gateway-nomedia",
            CHAT_WEB_CLIENT="1",
            CHAT_WEB_MEDIA_URL=f"http://127.0.0.1:{closed}",
        ),
        tmp_path_factory.mktemp("nomedia"),
        "gateway-nomedia",
    )
    try:
        proc.wait_ready()
        assert json.loads(_http(proc.url + "/web-config.json")[1])["media"] is True
        status, body = _http(proc.url + "/v1/uploads", {"fileName": "a.png", "size": 1})
        assert status == 503
        assert json.loads(body)["code"] == "UNAVAILABLE"
    finally:
        proc.stop()
