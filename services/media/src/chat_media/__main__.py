"""`python -m chat_media`: the media HTTP API plus its NATS worker (settings from `CHAT_*`).

The runtime's service plumbing (chat_runtime.service) as every worker: NATS login and
TLS, the ops port (`CHAT_HEALTH_PORT`: /healthz, /readyz, /metrics), the log format,
trace ids, the bounded drain. `build` adds the HTTP server, the upload sweeper and the
deletions consumer for as long as `cmd.media.*` is served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from aiohttp import web

from chat_contracts import subjects
from chat_media.access import CLEANUP_CONSUMER, Access, build_router, ensure_media_stream
from chat_media.http import MediaApi, Urls
from chat_media.images import ImageWorker
from chat_media.settings import MediaSettings
from chat_media.storage import Storage
from chat_media.storage.fs import FsStorage
from chat_media.storage.gridfs import GridFsStorage
from chat_media.store import MediaStore
from chat_media.store.mongo import MongoMediaStore
from chat_media.store.sqlite import SqliteMediaStore
from chat_media.uploads import Uploads
from chat_runtime.auth import TokenVerifier
from chat_runtime.bus import Bus, Publisher
from chat_runtime.clock import SystemClock, TimeOrderedIds
from chat_runtime.jetstream import PullConsumer
from chat_runtime.logs import LIFECYCLE
from chat_runtime.service import main as service_main
from chat_runtime.service import opened_store
from chat_runtime.worker import Router, cancel_tasks

SQLITE_FILE = "media.sqlite3"
log = logging.getLogger(LIFECYCLE)


@asynccontextmanager
async def opened_storage(settings: MediaSettings) -> AsyncIterator[Storage]:
    """The storage `CHAT_MEDIA_STORAGE` selects, opened for the block."""
    storage: Storage = (
        GridFsStorage(settings.mongodb_url, settings.mongodb_db)
        if settings.media_storage == "gridfs"
        else FsStorage(settings.media_dir)
    )
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


@asynccontextmanager
async def build(settings: MediaSettings, bus: Bus) -> AsyncIterator[Router]:
    """Store, storage, HTTP server, sweeper and deletions consumer, for as long as the
    router serves; on the way out the background work stops, then the HTTP server."""
    async with AsyncExitStack() as stack:
        sqlite: type[MediaStore] = SqliteMediaStore
        mongo: type[MediaStore] = MongoMediaStore
        store = await stack.enter_async_context(opened_store(settings, SQLITE_FILE, sqlite, mongo))
        storage = await stack.enter_async_context(opened_storage(settings))
        images = ImageWorker(
            max_pixels=settings.media_max_image_pixels, thumb_px=settings.media_thumbnail_px
        )
        stack.callback(images.close)
        clock = SystemClock()
        urls = Urls(settings.media_public_url)
        uploads = Uploads(
            settings=settings,
            store=store,
            storage=storage,
            publisher=Publisher(bus),
            images=images,
            clock=clock,
            ids=TimeOrderedIds(clock),
            media_url=urls.media,
        )
        access = Access(
            store=store,
            storage=storage,
            bus=bus,
            media_url=urls.media,
            media_id_of=urls.media_id_of,
        )
        api = MediaApi(
            uploads=uploads,
            access=access,
            storage=storage,
            verifier=TokenVerifier(settings),
            urls=urls,
            clock=clock,
            signing_key=settings.signing_key,
            link_ttl_s=settings.media_link_ttl_s,
            max_bytes=settings.media_max_bytes,
            ready=lambda: bus.connected,
        )
        runner = web.AppRunner(api.app(), access_log=None, handler_cancellation=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.media_host, settings.media_port)
        await site.start()
        port = runner.addresses[0][1]
        if not urls.base:
            urls.base = f"http://{settings.media_host}:{port}"
        # The bound port (0 asks for a free one); "media ready: ..." follows once
        # `cmd.media.*` is served too.
        log.info("media http on http://%s:%d (public %s)", settings.media_host, port, urls.base)
        # Deletions come through a durable JetStream consumer shared by the replicas.
        await ensure_media_stream(bus)
        cleanup = PullConsumer(
            bus,
            CLEANUP_CONSUMER,
            access.on_message_deleted,
            stream=subjects.MEDIA_STREAM,
            ensure=ensure_media_stream,
        )
        loop = asyncio.get_running_loop()
        background = [loop.create_task(uploads.run_sweeper()), loop.create_task(cleanup.run())]
        try:
            yield build_router(access)
        finally:
            await cancel_tasks(background)


def main() -> None:
    """Entry point."""
    # Media publishes to user subjects only, never into rooms: no room joins to follow.
    service_main(subjects.MEDIA, MediaSettings, build, rooms=False)


if __name__ == "__main__":
    main()
