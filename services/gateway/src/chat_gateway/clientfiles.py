"""What the gateway serves to client teams over plain HTTP, beside Socket.IO.

- `/asyncapi.json` and `/types/chat.d.ts`: the contract, rendered once from
  `chat_contracts.codegen` (the same text as `libs/contracts/generated/`, which a test
  keeps current), so a deployed gateway always describes exactly the events it serves.
- `/` and its assets: the web client (`web/dist`), only with `CHAT_WEB_CLIENT=1`.
- `/web-config.json`: what the web client needs to know about this deployment.
- `/v1/...`: forwarded to the media service (`CHAT_WEB_MEDIA_URL`) with the web client,
  so that the page uploads and downloads on its own origin (the media service answers
  no cross-origin requests).
- `POST /dev/token`: a token for any user name, only with `CHAT_DEV_MODE=1`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path

import aiohttp
import jwt
import msgspec
from aiohttp import web

from chat_contracts import codegen
from chat_contracts.ids import is_valid_id
from chat_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

#: Where `clients/` builds the web client (`npm run build`); committed, so no build is needed.
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[4] / "clients" / "web" / "dist"
#: Development tokens live a day, like `./taskw token`'s.
DEV_TOKEN_LIFETIME_S = 24 * 3600
#: The contract changes only with a new release of the gateway: let clients cache it briefly.
CONTRACT_MAX_AGE_S = 300


class DevTokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /dev/token` body."""

    userId: str
    name: str = ""


@cache
def _contract() -> dict[str, bytes]:
    files = codegen.rendered()
    return {"asyncapi": files["asyncapi.json"].encode(), "types": files["types.ts"].encode()}


def web_dir(settings: GatewaySettings) -> Path:
    """The folder of the built web client this gateway serves."""
    return Path(settings.web_client_dir) if settings.web_client_dir else DEFAULT_WEB_DIR


def mount(app: web.Application, settings: GatewaySettings) -> None:
    """Add the contract routes, and the web client and dev sign-in where enabled."""
    cache_header = {"Cache-Control": f"public, max-age={CONTRACT_MAX_AGE_S}"}

    async def asyncapi(_request: web.Request) -> web.Response:
        return web.Response(
            body=_contract()["asyncapi"], content_type="application/json", headers=cache_header
        )

    async def types(_request: web.Request) -> web.Response:
        return web.Response(
            body=_contract()["types"], content_type="application/typescript", headers=cache_header
        )

    app.router.add_get("/asyncapi.json", asyncapi)
    app.router.add_get("/types/chat.d.ts", types)
    if settings.dev_mode:
        app.router.add_post("/dev/token", _dev_token_handler(settings))
    if settings.web_client:
        _mount_web(app, settings)


def _mount_web(app: web.Application, settings: GatewaySettings) -> None:
    root = web_dir(settings)
    index = root / "index.html"
    if not index.is_file():
        # Fail at start, naming the setting, rather than serve 404s to a browser.
        raise ValueError(f"CHAT_WEB_CLIENT=1 but {index} does not exist (CHAT_WEB_CLIENT_DIR)")
    # Whether uploads work (the page reaches media through this gateway, never directly).
    config = msgspec.json.encode(
        {"devMode": settings.dev_mode, "media": bool(settings.web_media_url)}
    )

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    async def web_config(_request: web.Request) -> web.Response:
        return web.Response(body=config, content_type="application/json")

    app.router.add_get("/", page)
    app.router.add_get("/web-config.json", web_config)
    if (root / "assets").is_dir():
        app.router.add_static("/assets/", root / "assets")
    if settings.web_media_url:
        proxy = MediaProxy(settings.web_media_url)
        app.router.add_route("*", "/v1/{tail:.*}", proxy)
        app.on_cleanup.append(proxy.close)


#: Request and response headers the media forward passes on (the rest are hop-by-hop
#: or the gateway's own).
_FORWARD_REQUEST = ("Authorization", "Content-Type", "Content-Length", "Content-Range", "Range")
_FORWARD_RESPONSE = (
    "Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "Upload-Offset",
    "Location", "Cache-Control", "X-Content-Type-Options", "Content-Security-Policy",
)  # fmt: skip
#: Streamed in pieces of this size both ways (a 100 MiB upload never sits in memory).
_CHUNK = 256 * 1024


class MediaProxy:
    """Forwards `/v1/...` to the media service, streaming both ways."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        headers = {k: v for k in _FORWARD_REQUEST if (v := request.headers.get(k)) is not None}
        body = request.content.iter_chunked(_CHUNK) if request.body_exists else None
        try:
            async with self._session.request(
                request.method,
                self.base + request.rel_url.raw_path_qs,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as upstream:
                out = web.StreamResponse(status=upstream.status)
                for key in _FORWARD_RESPONSE:
                    if key in upstream.headers:
                        out.headers[key] = upstream.headers[key]
                await out.prepare(request)
                async for chunk in upstream.content.iter_chunked(_CHUNK):
                    await out.write(chunk)
                await out.write_eof()
                return out
        except aiohttp.ClientConnectionError as exc:
            # The media service is down or unreachable: say so, as its own API would.
            log.warning("media forward of %s failed: %s", request.rel_url.path, exc)
            return web.json_response(
                {"code": "UNAVAILABLE", "error": "media service unavailable"}, status=503
            )

    async def close(self, _app: web.Application) -> None:
        """Close the client session (on the application's cleanup)."""
        if self._session is not None:
            await self._session.close()


def _dev_token_handler(
    settings: GatewaySettings,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    decoder = msgspec.json.Decoder(DevTokenRequest)

    async def dev_token(request: web.Request) -> web.Response:
        try:
            body = decoder.decode(await request.read())
        except msgspec.ValidationError as exc:
            return web.json_response({"code": "VALIDATION_ERROR", "error": str(exc)}, status=400)
        except msgspec.DecodeError:
            return web.json_response(
                {"code": "VALIDATION_ERROR", "error": "body is not JSON"}, status=400
            )
        if not is_valid_id(body.userId):
            return web.json_response(
                {"code": "VALIDATION_ERROR", "error": "userId: letters, digits, '_' and '-'"},
                status=400,
            )
        now = int(time.time())
        claims: dict[str, str | int] = {
            "sub": body.userId,
            "name": body.name.strip()[:64] or body.userId,
            "iat": now,
            "exp": now + DEV_TOKEN_LIFETIME_S,
        }
        if settings.jwt_audience:
            claims["aud"] = settings.jwt_audience
        if settings.jwt_issuer:
            claims["iss"] = settings.jwt_issuer
        token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
        return web.json_response({"token": token, "userId": body.userId, "name": claims["name"]})

    return dev_token
