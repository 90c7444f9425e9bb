"""The gateway process: ``/ws`` plus health and metrics; talks to Redis only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from gateway.batcher import CommandBatcher
from gateway.commands import CommandWriter
from gateway.connection import CLOSE_GOING_AWAY
from gateway.endpoint import Gateway
from gateway.hub import Hub
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.service import ops_routes, redis_client
from justchat.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, gateway_id: str | None = None) -> ASGIApp:
    gateway_id = gateway_id or uuid.uuid4().hex[:12]
    registry = Registry()
    keys = Keys(settings.redis_prefix)
    public_url = settings.gateway_public_url or f"ws://{settings.host}:{settings.port}/ws"
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        redis = redis_client(settings.redis_url)
        hub = Hub(redis, keys, gateway_id, registry)
        await hub.start()
        batcher = CommandBatcher(redis)
        commands = CommandWriter(batcher, keys, settings)
        await batcher.start()
        gw = Gateway(settings, redis, hub, commands, registry, gateway_id)
        hub.on_reconnect = gw.reconnected
        hub.on_remove = gw.remove
        state.update(redis=redis, hub=hub, gateway=gw)
        connections = registry.gauge("gateway_connections", "open WebSocket connections")
        channels = registry.gauge("gateway_channels", "channels with local members")

        def collect() -> None:
            connections.set(len(hub.connections))
            channels.set(len(hub.members))

        registry.on_collect(collect)
        beat = asyncio.create_task(_heartbeat(gw, keys, public_url), name="heartbeat")
        log.info("gateway %s ready at %s", gateway_id, public_url)
        try:
            yield
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            for conn in list(hub.connections.values()):
                conn.close(CLOSE_GOING_AWAY, "Server shutting down")
            with contextlib.suppress(RedisError, OSError):
                await redis.zrem(keys.gateways, gateway_id)
                await redis.hdel(keys.gateway_urls, gateway_id)
            await batcher.close()
            await hub.close()
            await redis.aclose()

    async def health() -> dict[str, Any]:
        await state["redis"].ping()
        return {"gateway": gateway_id, "connections": len(state["hub"].connections)}

    http = Starlette(routes=ops_routes(registry, health), lifespan=lifespan)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # /ws skips Starlette's middleware and router: a connection's task then holds a few
        # coroutine frames less for as long as it lives (memory per idle connection).
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await state["gateway"].handle(WebSocket(scope, receive, send))
        else:
            await http(scope, receive, send)

    return app


async def _heartbeat(gw: Gateway, keys: Keys, public_url: str) -> None:
    """One write per gateway per interval keeps every local connection's presence alive.

    If presence-service already declared this gateway dead (Redis was unreachable for longer
    than the TTL), the ZADD adds a new member: the gateway then announces its members again.
    """
    first = True
    while True:
        try:
            expiry_ms = int((time.time() + gw.settings.presence_ttl_s) * 1000)
            async with gw.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(keys.gateways, {gw.gateway_id: expiry_ms})
                pipe.hset(keys.gateway_urls, gw.gateway_id, public_url)
                added, _ = await pipe.execute()
            if added and not first:
                log.warning("gateway %s was expired; announcing its members again", gw.gateway_id)
                await gw.reannounce()
            first = False
        except (RedisError, OSError) as exc:
            log.warning("heartbeat failed: %r", exc)
        await asyncio.sleep(gw.settings.heartbeat_s)
