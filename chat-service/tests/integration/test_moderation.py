"""chat-service's moderation command handler against real PostgreSQL and Redis: what it answers.

A command from the REST API (``request_id`` set) is answered on ``reply:{id}``; one from a
gateway (``origin`` set) with an ``error`` frame on the gateway's inbox when refused. A refusal
is an answer, never an exception (an exception would make the command a dead letter).
"""

from __future__ import annotations

import itertools
import random
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import pytest
import redis.asyncio as aioredis

from chat_service.consumer import CommandProcessor
from chat_service.moderation import Moderation, SanctionStore
from chat_service.store import ChatStore
from justchat import db, events, wire
from justchat.events import Actor, ModerateCmd, ModerateReply, Origin
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.service import redis_client
from justchat.settings import Settings
from justchat.wire import MAX_SANCTION_S

_channel_ids = itertools.count(random.randrange(1_000, 2**30))
WAIT_S = 10


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def keys(redis_prefix: str) -> Keys:
    return Keys(f"{redis_prefix}moderation:")


@pytest.fixture(scope="module")
def processor(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, app_settings: Settings
) -> CommandProcessor:
    moderation = Moderation(SanctionStore(pool), redis, keys)
    return CommandProcessor(ChatStore(pool), moderation, redis, keys, app_settings, Registry())


async def user(pool: asyncpg.Pool, role: str) -> Actor:
    username = f"{role[:3]}{secrets.token_hex(5)}"
    user_id = await pool.fetchval(
        "INSERT INTO users (username, role) VALUES ($1, $2) RETURNING id", username, role
    )
    return Actor(user_id=user_id, username=username, is_guest=False, role=role)


async def reply_to(redis: aioredis.Redis, keys: Keys, request_id: str) -> ModerateReply:
    popped = await redis.blpop([keys.moderation_reply(request_id)], timeout=WAIT_S)
    assert popped is not None, "no reply"
    return events.moderate_reply_decoder.decode(cast(tuple[bytes, bytes], popped)[1])


async def sanctions(pool: asyncpg.Pool, channel_id: int) -> list[asyncpg.Record]:
    return cast(
        list[asyncpg.Record],
        await pool.fetch(
            "SELECT username, kind, created_at, expires_at FROM sanctions WHERE channel_id = $1",
            channel_id,
        ),
    )


def rest(action: str, actor: Actor, target: str, **fields: Any) -> ModerateCmd:
    return ModerateCmd(
        action=action,
        channel_id=next(_channel_ids),
        actor=actor,
        target=target,
        request_id=uuid.uuid4().hex,
        **fields,
    )


async def test_an_applied_mute_is_answered_with_the_stored_row(
    processor: CommandProcessor, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    admin, target = await user(pool, "admin"), await user(pool, "user")
    first = rest("mute", admin, target.username, duration_s=90, reason="spam")
    await processor.moderate(first)
    answer = await reply_to(redis, keys, cast(str, first.request_id))
    [row] = await sanctions(pool, first.channel_id)
    assert answer == ModerateReply(
        outcome="applied", created=True, created_at=row["created_at"], expires_at=row["expires_at"]
    )
    # The same again renews the row: applied, not created.
    again = ModerateCmd(
        action="mute",
        channel_id=first.channel_id,
        actor=admin,
        target=target.username,
        request_id=uuid.uuid4().hex,
    )
    await processor.moderate(again)
    renewed = await reply_to(redis, keys, cast(str, again.request_id))
    [row] = await sanctions(pool, first.channel_id)
    assert renewed == ModerateReply(
        outcome="applied", created=False, created_at=row["created_at"], expires_at=None
    )


async def test_a_lift_is_answered_applied(
    processor: CommandProcessor, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    moderator, target = await user(pool, "moderator"), await user(pool, "user")
    command = rest("unban", moderator, target.username)
    await processor.moderate(command)
    assert await reply_to(redis, keys, cast(str, command.request_id)) == ModerateReply(
        outcome="applied"
    )


@pytest.mark.parametrize("action", ["mute", "ban", "unmute", "unban"])
async def test_a_moderator_acting_on_an_admin_is_refused(
    processor: CommandProcessor,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
    action: str,
) -> None:
    moderator, target = await user(pool, "moderator"), await user(pool, "admin")
    command = rest(action, moderator, target.username)
    await processor.moderate(command)
    assert await reply_to(redis, keys, cast(str, command.request_id)) == ModerateReply(
        outcome="refused", detail=wire.ERR_NO_PERMISSION
    )
    assert await sanctions(pool, command.channel_id) == []


async def test_the_actors_stored_role_decides_not_the_tokens(
    processor: CommandProcessor, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    """An admin demoted to moderator still carries ``admin`` in its token: not enough."""
    demoted, target = await user(pool, "moderator"), await user(pool, "admin")
    stale = Actor(user_id=demoted.user_id, username=demoted.username, is_guest=False, role="admin")
    command = rest("mute", stale, target.username)
    await processor.moderate(command)
    answer = await reply_to(redis, keys, cast(str, command.request_id))
    assert answer.outcome == "refused"
    assert await sanctions(pool, command.channel_id) == []


async def test_an_unknown_target_named_over_rest_is_no_user(
    processor: CommandProcessor, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    admin = await user(pool, "admin")
    command = rest("ban", admin, f"gone{secrets.token_hex(5)}")
    await processor.moderate(command)
    answer = await reply_to(redis, keys, cast(str, command.request_id))
    assert answer.outcome == "no_user"
    assert await sanctions(pool, command.channel_id) == []


@pytest.mark.parametrize("duration", [MAX_SANCTION_S + 1, 2**40, -1])
async def test_a_duration_storage_cannot_hold_is_invalid_over_rest(
    processor: CommandProcessor,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
    duration: int,
) -> None:
    admin, target = await user(pool, "admin"), await user(pool, "user")
    command = rest("mute", admin, target.username, duration_s=duration)
    await processor.moderate(command)  # answered, not raised: no dead letter
    answer = await reply_to(redis, keys, cast(str, command.request_id))
    assert answer.outcome == "invalid"
    assert str(MAX_SANCTION_S) in answer.detail
    assert await sanctions(pool, command.channel_id) == []


async def test_a_duration_storage_cannot_hold_is_malformed_on_the_wire(
    processor: CommandProcessor, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    admin, target = await user(pool, "admin"), await user(pool, "user")
    origin = Origin(gateway=f"gw-{secrets.token_hex(4)}", conn="c-1")
    command = ModerateCmd(
        action="ban",
        channel_id=next(_channel_ids),
        actor=admin,
        target=target.username,
        duration_s=MAX_SANCTION_S + 1,
        origin=origin,
    )
    async with redis.pubsub() as inbox:
        await inbox.subscribe(keys.gateway_inbox(origin.gateway))
        await inbox.get_message(timeout=WAIT_S)  # the subscription's confirmation
        await processor.moderate(command)
        message = await inbox.get_message(ignore_subscribe_messages=True, timeout=WAIT_S)
    assert message is not None, "no error frame for the moderator"
    direct = events.inbox_decoder.decode(message["data"])
    assert isinstance(direct, events.Direct)
    assert direct.conn == origin.conn
    [frame] = direct.frames
    decoded = wire.decode_server(frame)
    assert isinstance(decoded, wire.ErrorFrame)
    assert decoded.payload.detail == wire.ERR_MALFORMED
    assert await sanctions(pool, command.channel_id) == []


@pytest.mark.parametrize("field", ["reason", "target"])
async def test_a_nul_character_is_invalid_not_a_failed_write(
    processor: CommandProcessor,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
    field: str,
) -> None:
    admin, target = await user(pool, "admin"), await user(pool, "user")
    if field == "reason":
        command = rest("mute", admin, target.username, reason="a\x00b")
    else:
        command = rest("mute", admin, f"{target.username}\x00")
    await processor.moderate(command)  # answered, not raised: no dead letter
    answer = await reply_to(redis, keys, cast(str, command.request_id))
    assert answer.outcome == "invalid"
    assert await sanctions(pool, command.channel_id) == []
