"""presence-service: channel membership, typing and gateway expiry, all state in Redis."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette

from justchat import events
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.service import background, ops_routes, redis_client
from justchat.settings import Settings
from justchat.streams import PartitionedConsumer
from presence_service.handler import PresenceHandler, reap_dead_gateways
from presence_service.store import PresenceStore

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    registry = Registry()
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        keys = Keys(settings.redis_prefix)
        redis = redis_client(settings.redis_url)
        store = PresenceStore(redis, keys)
        handler = PresenceHandler(store, redis, keys, settings, registry)
        consumer = PartitionedConsumer(
            redis,
            name="presence",
            partitions=settings.partitions,
            ttl_ms=settings.lease_ttl_ms,
            stream=keys.presence_stream,
            lease=keys.presence_lease,
            replicas_key=keys.presence_replicas,
            dead_letters=keys.presence_dead_letters,
            decoder=events.presence_command_decoder,
            handler=handler,
            registry=registry,
        )
        state.update(redis=redis, consumer=consumer)
        try:
            async with background(
                consumer=consumer.run(),
                members_windows=handler.sweep(),
                reaper=reap_dead_gateways(store, redis, keys, settings, registry),
            ):
                log.info("presence-service %s ready", consumer.consumer)
                yield
        finally:
            await handler.close()
            await redis.aclose()

    async def health() -> dict[str, Any]:
        await state["redis"].ping()
        return {"partitions": sorted(state["consumer"].leases.owned)}

    return Starlette(routes=ops_routes(registry, health), lifespan=lifespan)
