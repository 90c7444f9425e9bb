"""The gateway's Redis writes against a real Redis: a checked send is one script (mute, rate,
XADD), typing is checked for mutes only, and scripts Redis does not know are loaded again."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.batcher import CommandBatcher
from gateway.commands import CommandWriter, RateLimited
from justchat import events, settings, wire
from justchat.errors import ProtocolError
from justchat.events import Actor, Origin
from justchat.keys import Keys, partition_of


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(f"{redis_prefix}cmd{uuid.uuid4().hex[:6]}:")  # fresh keys for each test


@pytest.fixture
async def writer(redis: aioredis.Redis, keys: Keys, redis_url: str) -> AsyncIterator[CommandWriter]:
    config = settings.from_env(
        {}, redis_url=redis_url, redis_prefix=keys.prefix, jwt_secret="x" * 40
    )  # the defaults users get: 5 messages/s, bursts of 20
    batcher = CommandBatcher(redis)
    writer = CommandWriter(batcher, keys, config)
    await batcher.start()
    yield writer
    await batcher.close()


def send_cmd(channel_id: int, content: str, username: str = "ann") -> events.SendCmd:
    return events.SendCmd(
        msg_id=str(uuid.uuid4()),
        channel_id=channel_id,
        actor=Actor(user_id=1, username=username, is_guest=False, role="user"),
        origin=Origin(gateway="g", conn="c"),
        content=content,
    )


async def stream_of(redis: aioredis.Redis, stream: str) -> list[events.ChatCommand]:
    entries = await redis.xrange(stream)
    return [events.chat_command_decoder.decode(fields[b"c"]) for _, fields in entries]


async def test_a_send_lands_on_its_channel_s_partition(
    writer: CommandWriter, redis: aioredis.Redis, keys: Keys
) -> None:
    command = send_cmd(12, "hello")
    await writer.send("ann", command)
    stream = keys.cmd_stream(partition_of(12, writer.settings.partitions))
    assert await stream_of(redis, stream) == [command]


async def test_a_muted_user_s_send_and_typing_are_refused_and_nothing_is_added(
    writer: CommandWriter, redis: aioredis.Redis, keys: Keys
) -> None:
    await redis.hset(keys.channel_mutes(12), "ann", 0)  # until lifted
    await redis.hset(keys.channel_mutes(12), "bob", int(time.time() * 1000) - 1)  # expired
    with pytest.raises(ProtocolError) as muted:
        await writer.send("ann", send_cmd(12, "hi"))
    assert muted.value.detail == wire.ERR_MUTED
    typing = events.PresenceTyping(
        channel_id=12, user=wire.UserFrom(username="ann", is_guest=False)
    )
    with pytest.raises(ProtocolError):
        await writer.typing("ann", typing)
    partition = partition_of(12, writer.settings.partitions)
    assert await redis.xlen(keys.cmd_stream(partition)) == 0
    assert await redis.xlen(keys.presence_stream(partition)) == 0
    # Another channel, and an expired mute, do not count.
    await writer.send("ann", send_cmd(13, "elsewhere"))
    await writer.send("bob", send_cmd(12, "free again", username="bob"))


async def test_sends_beyond_the_burst_are_refused_with_a_retry_time(writer: CommandWriter) -> None:
    burst = writer.settings.send_burst
    for i in range(burst):
        await writer.send("cat", send_cmd(12, f"m{i}"))
    with pytest.raises(RateLimited) as limited:
        await writer.send("cat", send_cmd(12, "one too many"))
    assert limited.value.detail == wire.ERR_TOO_FAST
    assert 0 < limited.value.retry_after_ms <= 1000 / writer.settings.send_rate_per_s + 1
    await writer.send("dan", send_cmd(12, "another user has a bucket of its own"))


async def test_typing_has_no_rate_limit(
    writer: CommandWriter, redis: aioredis.Redis, keys: Keys
) -> None:
    typing = events.PresenceTyping(
        channel_id=12, user=wire.UserFrom(username="eve", is_guest=False)
    )
    for _ in range(writer.settings.send_burst * 2):
        await writer.typing("eve", typing)
    stream = keys.presence_stream(partition_of(12, writer.settings.partitions))
    assert await redis.xlen(stream) == writer.settings.send_burst * 2


async def test_guest_numbers_come_from_the_seeded_counter(
    writer: CommandWriter, redis: aioredis.Redis, keys: Keys
) -> None:
    await redis.set(keys.guest_seq, 41)
    assert [await writer.next_guest() for _ in range(3)] == [42, 43, 44]


async def test_a_script_redis_does_not_know_is_loaded_and_run(redis: aioredis.Redis) -> None:
    batcher = CommandBatcher(redis)
    await batcher.start()
    marker = uuid.uuid4().hex  # a script no Redis has seen: the first EVALSHA gets NOSCRIPT
    sha = batcher.script(f"return '{marker}' .. ARGV[1]")
    assert await batcher.evalsha(sha, [], ["!"]) == f"{marker}!".encode()
    assert await redis.script_exists(sha) == [True]
    await batcher.close()
