"""PresenceHandler's member-list pacing against a real Redis, at the default interval (1 s).

The handler is driven with presence commands directly and what it publishes on the channel's
topic is read back, in order. The rule: every join or leave frame comes after a list that
explains it, each list is followed by something it explains, and the last list is the truth.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from justchat import events
from justchat.events import Origin, PresenceJoin, PresenceLeave
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.settings import Settings
from justchat.wire import UserFrom
from presence_service.handler import PresenceHandler
from presence_service.store import PresenceStore
from presence_service.windows import BURST

SETTINGS = Settings()  # the defaults users get
INTERVAL_S = SETTINGS.members_interval_ms / 1000
CHANNEL = 41


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def keys(redis_client: aioredis.Redis, redis_prefix: str) -> AsyncIterator[Keys]:
    k = Keys(f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
    yield k
    stale = [key async for key in redis_client.scan_iter(match=f"{k.prefix}*")]
    if stale:
        await redis_client.delete(*stale)


def new_handler(
    redis: aioredis.Redis, keys: Keys, settings: Settings = SETTINGS
) -> PresenceHandler:
    return PresenceHandler(PresenceStore(redis, keys), redis, keys, settings, Registry())


class Topic:
    """Everything published on one channel's topic, decoded to (type, payload) in order."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.pubsub = redis.pubsub()
        self.topic = keys.channel_topic(CHANNEL)
        self.frames: list[tuple[str, dict[str, Any]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Topic:
        await self.pubsub.subscribe(self.topic)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                event = events.channel_event_decoder.decode(message["data"])
                frame = json.loads(event.frame)
                self.frames.append((frame["type"], frame["payload"]))

    async def wait_for(self, count: int, timeout_s: float = 5 * INTERVAL_S + 5) -> None:
        """Until ``count`` frames have arrived (then a moment more, for any stray extra)."""
        deadline = time.monotonic() + timeout_s
        while len(self.frames) < count:
            assert time.monotonic() < deadline, f"{len(self.frames)} of {count}: {self.frames}"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)


def user(name: str) -> UserFrom:
    return UserFrom(username=name, is_guest=False)


def join(name: str) -> PresenceJoin:
    return PresenceJoin(channel_id=CHANNEL, origin=Origin(gateway="gw", conn=name), user=user(name))


def leave(name: str) -> PresenceLeave:
    return PresenceLeave(channel_id=CHANNEL, origin=Origin(gateway="gw", conn=name))


def names(payload: dict[str, Any]) -> list[str]:
    return [m["username"] for m in payload["members"]]


def check_order(frames: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """Assert the rule; return the lists' member names, in order."""
    lists: list[list[str]] = []
    explained = True
    for kind, payload in frames:
        if kind == "channel_members":
            assert explained, f"a list explained nothing: {frames}"
            lists.append(names(payload))
            explained = False
            continue
        who = payload["user"]["username"]
        assert lists, f"{kind} {who} before any list: {frames}"
        if kind == "channel_join":
            assert who in lists[-1], f"join of {who} not explained: {frames}"
        else:
            assert who not in lists[-1], f"leave of {who} not explained: {frames}"
        explained = True
    assert explained, f"the last list explained nothing: {frames}"
    return lists


async def test_a_quiet_channel_answers_at_once(redis_client: aioredis.Redis, keys: Keys) -> None:
    handler = new_handler(redis_client, keys)
    async with Topic(redis_client, keys) as topic:
        for name in "abc"[:BURST]:
            await handler.join(join(name))
        assert await redis_client.exists(keys.members_held(CHANNEL)) == 0  # nothing waits
        await topic.wait_for(2 * BURST)
    await handler.close()
    assert [kind for kind, _ in topic.frames] == ["channel_members", "channel_join"] * BURST
    assert check_order(topic.frames)[-1] == list("abc"[:BURST])


async def test_changes_beyond_the_burst_wait_for_one_list(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    handler = new_handler(redis_client, keys)
    joiners = [f"u{i}" for i in range(BURST + 4)]
    async with Topic(redis_client, keys) as topic:
        for name in joiners:
            await handler.join(join(name))
        await handler.leave(leave("u0"))
        await topic.wait_for(2 * BURST + 1 + 5)
    await handler.close()
    lists = check_order(topic.frames)
    assert len(lists) == BURST + 1  # the held four joins and the leave share one list
    assert lists[-1] == joiners[1:]
    held = topic.frames[2 * BURST + 1 :]
    assert [(kind, p["user"]["username"]) for kind, p in held] == [
        *(("channel_join", name) for name in joiners[BURST:]),
        ("channel_leave", "u0"),
    ]


async def test_a_reload_inside_a_window_gets_a_list_of_its_own(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    handler = new_handler(redis_client, keys)
    async with Topic(redis_client, keys) as topic:
        for name in ["a", "b", "c"][:BURST]:
            await handler.join(join(name))
        await handler.leave(leave("b"))  # held: the burst is spent
        await handler.join(join("d"))
        await handler.join(join("b"))  # b again in the same window
        await topic.wait_for(2 * BURST + 5)
    await handler.close()
    lists = check_order(topic.frames)
    held = topic.frames[2 * BURST :]
    # Lists are ordered by join time, then name: d and b may join within one millisecond.
    assert [
        (kind, set(names(p)) if kind == "channel_members" else p["user"]["username"])
        for kind, p in held
    ] == [
        ("channel_members", {"a", "c", "d"}),
        ("channel_leave", "b"),
        ("channel_join", "d"),
        ("channel_members", {"a", "c", "d", "b"}),
        ("channel_join", "b"),
    ]
    assert lists[-1][:2] == ["a", "c"]
    assert lists[-1][2:] in (["d", "b"], ["b", "d"])


async def test_a_window_outlives_the_replica_that_held_it(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    doomed = new_handler(redis_client, keys)
    survivor = new_handler(redis_client, keys)
    async with Topic(redis_client, keys) as topic:
        for name in ["a", "b", "c", "d"][: BURST + 1]:
            await doomed.join(join(name))
        await doomed.close()  # gone before its window's end: nothing in it was sent
        sweeper = asyncio.create_task(survivor.sweep())
        try:
            await topic.wait_for(2 * BURST + 2)
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
    await survivor.close()
    lists = check_order(topic.frames)
    assert lists[-1] == ["a", "b", "c", "d"][: BURST + 1]
    assert topic.frames[-1][0] == "channel_join"
    assert await redis_client.exists(keys.members_held(CHANNEL)) == 0


async def test_without_an_interval_every_change_goes_out_at_once(
    redis_client: aioredis.Redis, keys: Keys
) -> None:
    handler = new_handler(redis_client, keys, Settings(members_interval_ms=0))
    async with Topic(redis_client, keys) as topic:
        for name in ["a", "b", "c", "d", "e"]:
            await handler.join(join(name))
        await handler.leave(leave("a"))
        await topic.wait_for(12, timeout_s=2)
    await handler.close()
    assert len(check_order(topic.frames)) == 6
    assert await redis_client.exists(keys.members_pace(CHANNEL)) == 0
