"""aiohttp plumbing shared by the HTTP routes (`http`, `tus`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import ClientPayloadError, web

from chat_contracts.bus import Actor
from chat_media.storage import CHUNK

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The authenticated user of a request (raises `DomainError` UNAUTHORIZED).
ActorOf = Callable[[web.Request], Actor]


async def request_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body in chunks; a cut connection becomes `ConnectionResetError`."""
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            yield chunk
    except ClientPayloadError as exc:
        raise ConnectionResetError(str(exc)) from None
