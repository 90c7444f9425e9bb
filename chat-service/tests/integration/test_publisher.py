"""Publisher against a real Redis: one round trip per batch puts every message in its channel's
recent window, publishes it in seq order and ends its sender's typing; replays are harmless."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from chat_service import frames
from chat_service.publisher import Publisher
from chat_service.store import StoredMessage
from justchat import devservers, events
from justchat.keys import Keys

CREATED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(f"{redis_prefix}pub{uuid.uuid4().hex[:8]}:")


def message(channel_id: int, seq: int, sender: str = "alice") -> StoredMessage:
    return StoredMessage(
        id=uuid.uuid4(),
        channel_id=channel_id,
        seq=seq,
        sender_username=sender,
        sender_is_guest=False,
        content=f"m{seq}",
        client_msg_id=None,
        created_at=CREATED,
    )


class Listener:
    """Subscribed to some topics before the publish; collects what arrives."""

    def __init__(self, redis: aioredis.Redis, topics: list[str]) -> None:
        self.pubsub = redis.pubsub()
        self.topics = topics
        self.got: list[tuple[str, bytes]] = []

    async def __aenter__(self) -> Listener:
        await self.pubsub.subscribe(*self.topics)
        # Wait for Redis to confirm each subscription: only then is a publish sure to arrive.
        confirmed = 0
        while confirmed < len(self.topics):
            msg = await self.pubsub.get_message(timeout=5)
            if msg is None:
                raise AssertionError(f"subscriptions not confirmed: {self.topics}")
            confirmed += msg["type"] == "subscribe"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.pubsub.aclose()

    async def until(self, count: int, timeout_s: float = 10) -> list[tuple[str, bytes]]:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.got) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"got {len(self.got)} of {count} messages: {self.got}")
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if msg is not None:
                self.got.append((msg["channel"].decode(), msg["data"]))
        return self.got


async def test_a_batch_is_windowed_published_in_order_and_ends_typing(
    redis: aioredis.Redis, keys: Keys
) -> None:
    a = [message(1, seq, sender) for seq, sender in ((1, "alice"), (2, "bob"), (3, "alice"))]
    b = [message(2, 7, "carol")]
    for user in ("alice", "bob", "dave"):
        await redis.set(keys.channel_typing(1, user), 1, ex=60)
    await redis.set(keys.channel_typing(2, "carol"), 1, ex=60)
    inbox = keys.gateway_inbox("gw-1")
    topics = [keys.channel_topic(1), keys.channel_topic(2), inbox]
    async with Listener(redis, topics) as listener:
        published = await Publisher(redis, keys, 1000).publish(
            [a[0], b[0], a[1], a[2], a[1]], [(inbox, b"answer")]
        )
        got = await listener.until(5)
    assert published == 4  # a[1] twice in the batch: published once
    per_topic: dict[str, list[bytes]] = {}
    for topic, data in got:
        per_topic.setdefault(topic, []).append(data)
    decoded = [events.channel_event_decoder.decode(d) for d in per_topic[keys.channel_topic(1)]]
    assert [(e.seq, e.frame) for e in decoded] == [(m.seq, frames.message_frame(m)) for m in a]
    (event,) = [events.channel_event_decoder.decode(d) for d in per_topic[keys.channel_topic(2)]]
    assert (event.seq, event.frame) == (7, frames.message_frame(b[0]))
    assert per_topic[inbox] == [b"answer"]
    window = await redis.xrange(keys.channel_recent(1))
    assert [(i, f[b"frame"]) for i, f in window] == [
        (f"{m.seq}-1".encode(), frames.message_frame(m)) for m in a
    ]
    assert [i for i, _ in await redis.xrange(keys.channel_recent(2))] == [b"7-1"]
    # Senders stop typing; someone who only typed is still typing.
    assert await redis.exists(keys.channel_typing(1, "alice"), keys.channel_typing(1, "bob")) == 0
    assert await redis.exists(keys.channel_typing(2, "carol")) == 0
    assert await redis.exists(keys.channel_typing(1, "dave")) == 1


async def test_a_replayed_batch_is_published_again_and_the_window_keeps_one_copy(
    redis: aioredis.Redis, keys: Keys
) -> None:
    batch = [message(3, seq) for seq in (1, 2, 3)]
    publisher = Publisher(redis, keys, 1000)
    await publisher.publish(batch)
    async with Listener(redis, [keys.channel_topic(3)]) as listener:
        assert await publisher.publish([*batch, message(3, 4)]) == 4
        got = await listener.until(4)
    assert [events.channel_event_decoder.decode(d).seq for _, d in got] == [1, 2, 3, 4]
    window = await redis.xrange(keys.channel_recent(3))
    assert [i for i, _ in window] == [b"1-1", b"2-1", b"3-1", b"4-1"]


async def test_without_a_window_only_the_events_go_out(redis: aioredis.Redis, keys: Keys) -> None:
    async with Listener(redis, [keys.channel_topic(4)]) as listener:
        await Publisher(redis, keys, 0).publish([message(4, 1)])
        assert len(await listener.until(1)) == 1
    assert await redis.exists(keys.channel_recent(4)) == 0


async def test_a_wrong_key_type_is_an_error_not_a_silent_loss(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await redis.set(keys.channel_recent(5), "not a stream")
    with pytest.raises(aioredis.ResponseError, match="WRONGTYPE"):
        await Publisher(redis, keys, 1000).publish([message(5, 1)])


@pytest.mark.slow
async def test_after_redis_forgets_the_script_it_is_sent_again(tmp_path: Path) -> None:
    with devservers.start_redis(tmp_path / "redis") as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            keys = Keys("p:")
            publisher = Publisher(client, keys, 1000)
            await publisher.publish([message(1, 1)])  # unknown at first: loaded
            await client.script_flush()  # as after a restart
            async with Listener(client, [keys.channel_topic(1)]) as listener:
                assert await publisher.publish([message(1, 2), message(1, 3)]) == 2
                got = await listener.until(2)
            assert [events.channel_event_decoder.decode(d).seq for _, d in got] == [2, 3]
            window = await client.xrange(keys.channel_recent(1))
            assert [i for i, _ in window] == [b"1-1", b"2-1", b"3-1"]
        finally:
            await client.aclose()
