"""Local servers that implement each push provider's request/response contract.

- FCM HTTP v1: `POST /token` (the OAuth2 JWT-bearer exchange google-auth makes at the
  service account's `token_uri`, checked against the account's public key) and
  `POST /v1/projects/<p>/messages:send` (bearer token checked); error answers in FCM's
  JSON shape: 404 `UNREGISTERED`, 429 `QUOTA_EXCEEDED` with `Retry-After`.
- APNs: HTTP/2 over TLS (ALPN h2) with the `h2` library: `POST /3/device/<token>`, a
  provider JWT (ES256, `kid`, `iss` = team) checked against the `.p8` key's public key,
  the `apns-id` echoed, `{"reason": ...}` bodies (410 `Unregistered`, 400 `BadDeviceToken`).
- Web Push: `POST /push/<id>`: VAPID `Authorization: vapid t=..., k=...` verified, then
  the aes128gcm body decrypted with the subscription's private key and auth secret
  (`http_ece`), which proves the library encrypted it for that subscription.

All run on one event loop in a background thread; what they received is kept in
`Received`, read by the tests through `wait_for`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chat_testkit.tls import self_signed


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Push:
    """One push a fake accepted (answered 200/201 to a live connection)."""

    provider: str
    token: str
    title: str
    body: str
    data: dict[str, str]
    collapse_id: str
    high_priority: bool


@dataclass
class Received:
    """Everything the fakes saw; thread-safe."""

    pushes: list[Push] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (provider, token)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def add_request(self, provider: str, token: str) -> None:
        with self.lock:
            self.requests.append((provider, token))
            self.lock.notify_all()

    def add(self, push: Push) -> None:
        with self.lock:
            self.pushes.append(push)
            self.lock.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Push]], bool], timeout: float = 15.0
    ) -> list[Push]:
        """Block until `predicate(pushes)`; the pushes then."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self.pushes):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"push fakes: condition not met; got {self.pushes}")
                self.lock.wait(left)
            return list(self.pushes)

    def of(self, token: str) -> list[Push]:
        with self.lock:
            return [p for p in self.pushes if p.token == token]


@dataclass
class Behaviour:
    """How the fakes answer particular tokens (set by tests)."""

    #: token -> remaining 429s before a 200 (Retry-After: `retry_after_s`).
    throttled: dict[str, int] = field(default_factory=dict)
    retry_after_s: int = 1
    #: Tokens the provider reports invalid/unregistered.
    invalid: set[str] = field(default_factory=set)
    #: token -> event the fake waits for before answering (a request held in flight).
    hold: dict[str, threading.Event] = field(default_factory=dict)
    #: set when a held request arrived.
    held: dict[str, threading.Event] = field(default_factory=dict)


class Fakes:
    """The three providers, their credentials and TLS material, in one background loop."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.received = Received()
        self.behaviour = Behaviour()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._make_credentials()

    # --- credentials ----------------------------------------------------------------

    def _make_credentials(self) -> None:
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.fcm_public = rsa_key.public_key()
        self._fcm_pem = rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.fcm_token = "fcm-access-" + b64url(os.urandom(12))
        apns_key = ec.generate_private_key(ec.SECP256R1())
        self.apns_public = apns_key.public_key()
        self.apns_key_file = self.workdir / "AuthKey_TESTKEY123.p8"
        self.apns_key_file.write_bytes(
            apns_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        # A self-signed certificate for 127.0.0.1 (the APNs fake's TLS).
        self.tls_cert_file, self._tls_key_file = self_signed(self.workdir, "apns-fake")
        vapid_key = ec.generate_private_key(ec.SECP256R1())
        self.vapid_public = vapid_key.public_key()
        self.vapid_key_file = self.workdir / "vapid.pem"
        self.vapid_key_file.write_bytes(
            vapid_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        #: Browser subscriptions: endpoint id -> (private key, auth secret).
        self._subscriptions: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = {}

    def subscription(self) -> str:
        """A new browser PushSubscription (as the JSON a client registers)."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        sub_id = b64url(os.urandom(9))
        self._subscriptions[sub_id] = (key, auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return json.dumps(
            {
                "endpoint": f"http://127.0.0.1:{self.web_port}/push/{sub_id}",
                "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
            }
        )

    def service_account_file(self) -> Path:
        """The service-account JSON google-auth reads (token_uri = the fake)."""
        path = self.workdir / "service-account.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "chat-test",
                    "private_key_id": "k1",
                    "private_key": self._fcm_pem,
                    "client_email": "push@chat-test.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": f"http://127.0.0.1:{self.fcm_port}/token",
                }
            )
        )
        return path

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> Fakes:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _start(self) -> None:
        self.fcm_port = await self._serve_http(self._fcm_app())
        self.web_port = await self._serve_http(self._web_app())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_cert_file, self._tls_key_file)
        context.set_alpn_protocols(["h2"])
        server = await self._loop.create_server(
            lambda: _ApnsProtocol(self), "127.0.0.1", 0, ssl=context
        )
        self._servers.append(server)
        self.apns_port = server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        for server in self._servers:
            server.close()

    async def _serve_http(self, app: web.Application) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return port

    async def _gate(self, request: web.Request | None, token: str) -> bool:
        """Hold a request the test asked to hold; False when its client went away."""
        hold = self.behaviour.hold.get(token)
        if hold is None:
            return True
        self.behaviour.held.setdefault(token, threading.Event()).set()
        await asyncio.to_thread(hold.wait)
        await asyncio.sleep(0.2)  # let a killed client's connection reset arrive
        return request is None or not _gone(request)

    # --- FCM ------------------------------------------------------------------------

    def _fcm_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._fcm_oauth)
        app.router.add_post("/v1/projects/{project}/messages:send", self._fcm_send)
        return app

    async def _fcm_oauth(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        claims = jwt.decode(
            str(form["assertion"]),
            self.fcm_public,  # type: ignore[arg-type]
            algorithms=["RS256"],
            # google-auth always names Google's token endpoint as the audience.
            audience="https://oauth2.googleapis.com/token",
        )
        assert "firebase.messaging" in claims["scope"]
        return web.json_response(
            {"access_token": self.fcm_token, "expires_in": 3600, "token_type": "Bearer"}
        )

    async def _fcm_send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.fcm_token}":
            return _fcm_error(401, "UNAUTHENTICATED", None)
        message = (await request.json())["message"]
        token = message["token"]
        self.received.add_request("fcm", token)
        if token in self.behaviour.invalid:
            return _fcm_error(404, "NOT_FOUND", "UNREGISTERED")
        left = self.behaviour.throttled.get(token, 0)
        if left:
            self.behaviour.throttled[token] = left - 1
            response = _fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
            response.headers["Retry-After"] = str(self.behaviour.retry_after_s)
            return response
        if not await self._gate(request, token):
            return _fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")
        self.received.add(
            Push(
                provider="fcm",
                token=token,
                title=message["notification"]["title"],
                body=message["notification"]["body"],
                data=message["data"],
                collapse_id=message["android"]["collapse_key"],
                high_priority=message["android"]["priority"] == "high",
            )
        )
        return web.json_response(
            {"name": f"projects/chat-test/messages/{len(self.received.pushes)}"}
        )

    # --- Web Push -------------------------------------------------------------------

    def _web_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/push/{sub}", self._web_push)
        return app

    async def _web_push(self, request: web.Request) -> web.Response:
        sub_id = request.match_info["sub"]
        endpoint = f"http://127.0.0.1:{self.web_port}/push/{sub_id}"
        self.received.add_request("webpush", endpoint)
        scheme, _, params = request.headers.get("Authorization", "").partition(" ")
        fields = dict(part.strip().split("=", 1) for part in params.split(","))
        if scheme.lower() != "vapid":
            return web.Response(status=401)
        jwt.decode(
            fields["t"],
            self.vapid_public,  # type: ignore[arg-type]
            algorithms=["ES256"],
            audience=f"http://127.0.0.1:{self.web_port}",
        )
        if sub_id not in self._subscriptions or endpoint in self.behaviour.invalid:
            return web.Response(status=410, text="push subscription has unsubscribed or expired")
        assert request.headers["Content-Encoding"] == "aes128gcm"
        private, auth = self._subscriptions[sub_id]
        plain = http_ece.decrypt(
            await request.read(), private_key=private, auth_secret=auth, version="aes128gcm"
        )
        note = json.loads(plain)
        if not await self._gate(request, endpoint):
            return web.Response(status=503)
        self.received.add(
            Push(
                provider="webpush",
                token=endpoint,
                title=note["title"],
                body=note["body"],
                data=note["data"],
                collapse_id=request.headers.get("Topic", ""),
                high_priority=request.headers.get("Urgency") == "high",
            )
        )
        return web.Response(status=201)

    # --- APNs (called by the h2 protocol) ---------------------------------------------

    def apns_answer(
        self, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        """Status and JSON body (None = empty) for one APNs request."""
        token = headers[":path"].removeprefix("/3/device/")
        self.received.add_request("apns", token)
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        try:
            assert scheme == "bearer"
            header = jwt.get_unverified_header(bearer)
            assert header["kid"] == "TESTKEY123"
            claims = jwt.decode(bearer, self.apns_public, algorithms=["ES256"])  # type: ignore[arg-type]
            assert claims["iss"] == "TEAM123456"
        except (AssertionError, KeyError, jwt.PyJWTError):
            return 403, {"reason": "InvalidProviderToken"}
        if headers.get("apns-topic") != "com.example.chat":
            return 400, {"reason": "TopicDisallowed"}
        if token in self.behaviour.invalid:
            return 410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}
        if not all(c in "0123456789abcdef" for c in token):
            return 400, {"reason": "BadDeviceToken"}
        note = json.loads(body)
        aps = note.pop("aps")
        self.received.add(
            Push(
                provider="apns",
                token=token,
                title=aps["alert"]["title"],
                body=aps["alert"]["body"],
                data=note,
                collapse_id=headers.get("apns-collapse-id", ""),
                high_priority=headers.get("apns-priority") == "10",
            )
        )
        return 200, None


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _fcm_error(status: int, code: str, fcm_code: str | None) -> web.Response:
    details = (
        [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}]
        if fcm_code
        else []
    )
    return web.json_response(
        {"error": {"code": status, "message": code, "status": code, "details": details}},
        status=status,
    )


class _ApnsProtocol(asyncio.Protocol):
    """A minimal HTTP/2 server: one response per request stream."""

    def __init__(self, fakes: Fakes) -> None:
        self._fakes = fakes
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._conn.initiate_connection()
        transport.write(self._conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self._conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self._streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                self._streams[event.stream_id][1].extend(event.data)
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = self._streams.pop(event.stream_id)
                status, answer = self._fakes.apns_answer(headers, bytes(body))
                out = [(":status", str(status)), ("apns-id", headers.get("apns-id", ""))]
                payload = json.dumps(answer).encode() if answer is not None else b""
                self._conn.send_headers(event.stream_id, out, end_stream=not payload)
                if payload:
                    self._conn.send_data(event.stream_id, payload, end_stream=True)
        if self._transport is not None:
            self._transport.write(self._conn.data_to_send())
