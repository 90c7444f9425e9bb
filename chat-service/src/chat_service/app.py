"""chat-service: owns messages and history; consumes gateway commands from Redis streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import asyncpg
from starlette.applications import Starlette

from chat_service.consumer import CommandProcessor
from chat_service.moderation import Moderation, SanctionStore
from chat_service.store import ChatStore
from justchat import db, events
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.service import background, ops_routes, redis_client
from justchat.settings import Settings
from justchat.streams import TRANSIENT, PartitionedConsumer

log = logging.getLogger(__name__)

SEED_INTERVAL_S: Final = 1.0

# Only raise the counter: a Redis that lost its data must never hand out a stored guest name.
_SEED_GUESTS = """
local current = redis.call('GET', KEYS[1])
if not current or tonumber(current) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""


def create_app(settings: Settings) -> Starlette:
    registry = Registry()
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        keys = Keys(settings.redis_prefix)
        pool = await db.create_pool(settings.database_url, reset=_keep_session)
        redis = redis_client(settings.redis_url)
        store = ChatStore(pool)
        moderation = Moderation(SanctionStore(pool), redis, keys)
        processor = CommandProcessor(store, moderation, redis, keys, settings, registry)
        consumer = PartitionedConsumer(
            redis,
            name="chat",
            partitions=settings.partitions,
            ttl_ms=settings.lease_ttl_ms,
            stream=keys.cmd_stream,
            lease=keys.lease,
            replicas_key=keys.chat_replicas,
            dead_letters=keys.dead_letters,
            decoder=events.chat_command_decoder,
            handler=processor,
            registry=registry,
            # One lane: every partition's sends of a round are stored and published together.
            lanes=1,
        )
        state.update(pool=pool, redis=redis, consumer=consumer)
        try:
            async with background(
                consumer=consumer.run(), seed=_seed_redis(store, moderation, redis, keys)
            ):
                log.info("chat-service %s ready", consumer.consumer)
                yield
        finally:
            await redis.aclose()
            await pool.close()

    async def health() -> dict[str, Any]:
        await state["redis"].ping()
        await state["pool"].fetchval("SELECT 1")
        return {"partitions": sorted(state["consumer"].leases.owned)}

    return Starlette(routes=ops_routes(registry, health), lifespan=lifespan)


async def _keep_session(_: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query when a connection goes back to the pool: chat-service sets no
    session state (no SET, LISTEN, cursors or session locks), so it would cost a round trip per
    query for nothing. Open transactions are still rolled back by asyncpg itself."""


async def _seed_redis(store: ChatStore, moderation: Moderation, redis: Any, keys: Keys) -> None:
    """Keep Redis's derived state whole: the guest counter, the set of channels, the mutes.

    All live in PostgreSQL; Redis keeps nothing on disk, so after a Redis restart they are
    rebuilt here within a second (the guest counter's absence is the sign of a fresh Redis).
    """
    seed = redis.register_script(_SEED_GUESTS)
    while True:
        try:
            if not await redis.exists(keys.guest_seq):
                await seed(keys=[keys.guest_seq], args=[await store.max_guest_number()])
                channel_ids = await store.channel_ids()
                if channel_ids:
                    await redis.sadd(keys.channels, *channel_ids)
                mutes = await moderation.seed_mutes()
                log.info("seeded guest counter, %s channels, %s mutes", len(channel_ids), mutes)
        except TRANSIENT as exc:
            log.warning("seeding failed: %r", exc)
        await asyncio.sleep(SEED_INTERVAL_S)
