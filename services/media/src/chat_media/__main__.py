"""`python -m chat_media`: the media HTTP API plus its NATS worker (settings from `CHAT_*`)."""

from __future__ import annotations

import asyncio
import contextlib
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
from chat_runtime.logs import LIFECYCLE, setup_logging
from chat_runtime.service import opened_store
from chat_runtime.settings import exit_on_error, load_settings
from chat_runtime.worker import Worker, run, wait_for_shutdown

SQLITE_FILE = "media.sqlite3"
#: How long the last NATS drain may take at shutdown (the stack's SIGKILL comes at 10 s).
DRAIN_TIMEOUT_S = 3.0
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


async def serve(settings: MediaSettings) -> None:
    """Connect, serve HTTP and `cmd.media.*` until SIGTERM, then drain and close."""
    # No `track_joins`: media publishes to user subjects only, never into rooms.
    bus = await Bus.connect(
        settings.nats_url, name=subjects.MEDIA, randomize=settings.nats_randomize
    )
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
        site = web.TCPSite(runner, settings.media_host, settings.media_port)
        await site.start()
        port = runner.addresses[0][1]
        if not urls.base:
            urls.base = f"http://{settings.media_host}:{port}"

        router = build_router(access)
        worker = Worker(bus, router, settings.max_in_flight)
        await worker.start()
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
        log.info("media ready on http://%s:%d (public %s)", settings.media_host, port, urls.base)
        await wait_for_shutdown()
        log.info("media draining")
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await worker.stop()
        await runner.cleanup()
    try:
        # A JetStream request cut short by the shutdown (a NATS node down: the consumer
        # was re-subscribing) can leave an inbox that drain would wait 30 s for.
        await asyncio.wait_for(bus.close(), DRAIN_TIMEOUT_S)
    except TimeoutError:
        log.warning("media: NATS drain took over %.0f s; closing", DRAIN_TIMEOUT_S)
        await bus.nc.close()


def main() -> None:
    """Entry point."""
    settings = exit_on_error(lambda: load_settings(MediaSettings))
    setup_logging(settings.log_level)

    async def _main() -> None:
        await serve(settings)

    run(_main)


if __name__ == "__main__":
    main()
