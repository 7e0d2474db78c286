"""`python -m chat_gateway`: settings → NATS + Redis → serve HTTP/Socket.IO → drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from chat_gateway import drain
from chat_gateway.app import Gateway
from chat_gateway.lean import LeanServer
from chat_gateway.metrics import GatewayCollector
from chat_gateway.resp import redis_options
from chat_gateway.settings import GatewaySettings
from chat_runtime import nats_auth
from chat_runtime.logs import LIFECYCLE, setup_logging
from chat_runtime.redis_client import connect_redis
from chat_runtime.service import bus_check, start_ops, start_tracing
from chat_runtime.settings import exit_on_error, load_settings
from chat_runtime.worker import run, wait_for_shutdown

log = logging.getLogger(LIFECYCLE)


async def serve(settings: GatewaySettings) -> None:
    """Run one gateway until SIGTERM/SIGINT."""
    ops = await start_ops("gateway", settings)
    bus = await nats_auth.connect(settings, f"gateway-{settings.node_id}")
    # Every call has a reply deadline: a hung Redis gives retry acks, not silence.
    redis = connect_redis(settings, **redis_options(settings.redis_timeout_ms))
    gateway = Gateway(settings, bus, redis)
    ops.add_check("nats", bus_check(bus))
    ops.add_check("redis", gateway.redis_ready)
    ops.registry.register(GatewayCollector(gateway))
    # A pending long-poll request may hold shutdown for its full 25 s ping interval;
    # 3 s is plenty for the last responses to flush.
    runner = web.AppRunner(gateway.web_app(), handle_signals=False, shutdown_timeout=3.0)
    await runner.setup()
    assert runner.server is not None
    lean = LeanServer(gateway, gateway.policy, fallback=runner.server)
    # One listening socket: the lean server reads each connection's first request and
    # hands everything that is not a direct WebSocket to aiohttp (see lean.py).
    listener = await asyncio.get_running_loop().create_server(
        lean.protocol, settings.gateway_host, settings.gateway_port, backlog=4096
    )
    lean.start()
    await gateway.start_background()
    port = listener.sockets[0].getsockname()[1]
    ops.started = True
    # Tests and the dev runner wait for this line; the port matters when 0 was asked.
    log.info("gateway ready on http://%s:%d", settings.gateway_host, port)
    await wait_for_shutdown()
    # Not ready at once (the load balancer stops sending), no new connections, then
    # the transports closed (not a Socket.IO disconnect, which clients do not retry)
    # over the drain window, so clients reconnect elsewhere and `sync` what they missed.
    gateway.draining = True
    ops.draining = True
    listener.close()
    window = drain.window_for(len(lean.connections), settings.drain_window_ms)
    log.info("gateway draining %d sockets over %d ms", len(lean.connections), window * 1000)
    await drain.close_spread(list(lean.connections.values()), window)
    await lean.close()
    await gateway.sio.shutdown()
    await runner.cleanup()
    await gateway.close()
    await bus.close()
    await redis.aclose()
    await ops.close()


def main() -> None:
    """Entry point."""
    settings = exit_on_error(lambda: load_settings(GatewaySettings))
    setup_logging(settings.log_level, settings.log_format, "gateway", settings.node_id)
    flush = start_tracing(settings, "gateway")
    try:
        run(lambda: serve(settings))
    finally:
        flush()


if __name__ == "__main__":
    main()
