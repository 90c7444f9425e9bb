"""CommandProcessor against real PostgreSQL and Redis: a batch mixing sends and fresh joins is
answered as if its commands ran one by one (stored, published once, answered to the sender;
joins get their channel's history, banned ones an error)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from chat_service.consumer import CommandProcessor
from chat_service.moderation import Moderation, SanctionStore
from chat_service.store import ChatStore
from justchat import db, events, wire
from justchat.events import Actor, Direct, JoinCmd, Origin, SendCmd
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.settings import Settings

GATEWAY = "gw-proc"


@pytest.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(f"{redis_prefix}proc{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def processor(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys, app_settings: Settings
) -> CommandProcessor:
    store = ChatStore(pool)
    moderation = Moderation(SanctionStore(pool), redis, keys)
    return CommandProcessor(store, moderation, redis, keys, app_settings, Registry())


def actor(name: str) -> Actor:
    return Actor(
        user_id=None, username=f"Guest{name}{uuid.uuid4().hex[:6]}", is_guest=True, role="guest"
    )


def new_channel() -> int:
    return int(uuid.uuid4().int % 2**30) + 1_000


class Inbox:
    def __init__(self, redis: aioredis.Redis, keys: Keys, channel_id: int) -> None:
        self.pubsub = redis.pubsub()
        self.topics = [keys.gateway_inbox(GATEWAY), keys.channel_topic(channel_id)]
        self.directs: dict[str, Direct] = {}
        self.events: list[events.ChannelEvent] = []

    async def __aenter__(self) -> Inbox:
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

    async def until(self, directs: int, channel_events: int, timeout_s: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.directs) < directs or len(self.events) < channel_events:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"got {self.directs} and {self.events}")
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if msg is None:
                continue
            if msg["channel"].decode() == self.topics[0]:
                direct = events.inbox_decoder.decode(msg["data"])
                assert isinstance(direct, Direct)
                self.directs[direct.conn] = direct
            else:
                self.events.append(events.channel_event_decoder.decode(msg["data"]))


def send(channel_id: int, who: Actor, content: str, cmid: str | None = None) -> SendCmd:
    return SendCmd(
        msg_id=str(uuid.uuid4()),
        channel_id=channel_id,
        actor=who,
        origin=Origin(gateway=GATEWAY, conn=f"send-{content}"),
        content=content,
        client_msg_id=cmid,
    )


def join(channel_id: int, who: Actor, conn: str) -> JoinCmd:
    return JoinCmd(
        channel_id=channel_id,
        actor=who,
        origin=Origin(gateway=GATEWAY, conn=conn),
        request_id=f"r-{conn}",
    )


async def test_a_batch_of_sends_and_joins(
    processor: CommandProcessor, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    channel, empty = new_channel(), new_channel()
    alice, bob, mallory = actor("a"), actor("b"), actor("m")
    await pool.execute("INSERT INTO channels (id) VALUES ($1)", channel)
    await pool.execute(
        "INSERT INTO sanctions (channel_id, username, kind, created_by)"
        " VALUES ($1, $2, 'ban', 'x')",
        channel,
        mallory.username,
    )
    async with Inbox(redis, keys, channel) as inbox:
        await processor.handle(
            [
                send(channel, alice, "one", cmid="k"),
                send(channel, alice, "one again", cmid="k"),  # repeat within the batch
                send(channel, bob, "two"),
                join(channel, mallory, "mallory"),
                join(channel, bob, "bob"),
                join(empty, bob, "bob-empty"),
                join(channel, alice, "alice"),
            ]
        )
        await inbox.until(directs=5, channel_events=2)
    assert [(e.seq, wire.decode_server(e.frame).payload.content) for e in inbox.events] == [  # type: ignore[union-attr]
        (1, "one"),
        (2, "two"),
    ]
    # The repeat is answered to its sender alone, with the original message.
    (answer,) = inbox.directs["send-one again"].frames
    assert answer == inbox.events[0].frame
    banned = inbox.directs["mallory"]
    assert (banned.ok, banned.request_id) == (False, "r-mallory")
    assert wire.decode_server(banned.frames[0]).payload.detail == wire.ERR_BANNED  # type: ignore[union-attr]
    for conn in ("bob", "alice"):
        joined = inbox.directs[conn]
        assert (joined.ok, joined.request_id, joined.last_seq) == (True, f"r-{conn}", 2)
        history = [wire.decode_server(f) for f in joined.frames]
        assert [h.payload.seq for h in history] == [1, 2]  # type: ignore[union-attr]
        assert [h.payload.reactions for h in history] == [[], []]  # type: ignore[union-attr]
    fresh = inbox.directs["bob-empty"]
    assert (fresh.ok, fresh.frames, fresh.last_seq) == (True, [], 0)
    assert await pool.fetchval("SELECT last_seq FROM channels WHERE id = $1", empty) == 0
    assert {int(c) for c in await redis.smembers(keys.channels)} == {channel, empty}
