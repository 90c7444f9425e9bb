"""PresenceStore against a real Redis: the join/leave Lua scripts and the gateway index.

Every test gets its own key prefix (the session's ``redis_prefix`` plus a suffix) and deletes its
keys afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from justchat.events import Origin
from justchat.keys import Keys
from justchat.wire import UserFrom
from presence_service.store import PresenceStore

ALICE = UserFrom(username="alice", is_guest=False)
BOB = UserFrom(username="bob", is_guest=False)
GUEST = UserFrom(username="Guest7", is_guest=True)


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


@pytest.fixture
def store(redis_client: aioredis.Redis, keys: Keys) -> PresenceStore:
    return PresenceStore(redis_client, keys)


def origin(conn: str, gateway: str = "gw-a") -> Origin:
    return Origin(gateway=gateway, conn=conn)


async def tick() -> None:
    """Let the millisecond clock move, so first-join times are distinct."""
    await asyncio.sleep(0.003)


async def test_first_join(store: PresenceStore, redis_client: aioredis.Redis, keys: Keys) -> None:
    result = await store.join(8, origin("c1"), ALICE)
    assert result.already_present is False
    assert result.members == [ALICE]
    assert await redis_client.hlen(keys.channel_conns(8)) == 1
    assert await redis_client.zscore(keys.active_channels, "8") == 1


async def test_members_each_user_once_in_first_join_order(store: PresenceStore) -> None:
    assert (await store.join(8, origin("c1"), ALICE)).members == [ALICE]
    await tick()
    assert (await store.join(8, origin("c2"), GUEST)).members == [ALICE, GUEST]
    await tick()
    assert (await store.join(8, origin("c3"), BOB)).members == [ALICE, GUEST, BOB]
    await tick()
    again = await store.join(8, origin("c4", gateway="gw-b"), GUEST)
    assert again.already_present is True
    assert again.members == [ALICE, GUEST, BOB]


async def test_second_connection_of_the_same_user(
    store: PresenceStore, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await store.join(8, origin("c1"), ALICE)
    same_gateway = await store.join(8, origin("c2"), ALICE)
    other_gateway = await store.join(8, origin("c1", gateway="gw-b"), ALICE)
    assert same_gateway.already_present is True
    assert other_gateway.already_present is True
    assert other_gateway.members == [ALICE]
    assert await redis_client.hlen(keys.channel_conns(8)) == 3
    assert await redis_client.zscore(keys.active_channels, "8") == 3


async def test_already_present_is_per_channel(store: PresenceStore) -> None:
    await store.join(8, origin("c1"), ALICE)
    elsewhere = await store.join(9, origin("c1"), ALICE)
    assert elsewhere.already_present is False
    assert elsewhere.members == [ALICE]
    assert (await store.join(8, origin("c2"), BOB)).members == [ALICE, BOB]


async def test_usernames_with_pipes(store: PresenceStore) -> None:
    piped = UserFrom(username="a|1|b", is_guest=True)
    prefix = UserFrom(username="a", is_guest=False)
    assert (await store.join(8, origin("c1"), piped)).already_present is False
    await tick()
    result = await store.join(8, origin("c2"), prefix)
    assert result.already_present is False  # "a" is not "a|1|b"
    assert result.members == [piped, prefix]
    assert (await store.join(8, origin("c3"), piped)).already_present is True


async def test_leave_of_a_non_member_is_none(store: PresenceStore) -> None:
    assert await store.leave(8, origin("c1")) is None
    await store.join(8, origin("c1"), ALICE)
    assert await store.leave(8, origin("c2")) is None
    assert await store.leave(8, origin("c1", gateway="gw-b")) is None  # same conn id, other gw
    assert await store.leave(9, origin("c1")) is None


async def test_leave_one_of_two_connections(store: PresenceStore) -> None:
    await store.join(8, origin("c1"), ALICE)
    await tick()
    await store.join(8, origin("c2"), BOB)
    await tick()
    await store.join(8, origin("c3", gateway="gw-b"), ALICE)
    first = await store.leave(8, origin("c1"))
    assert first is not None
    assert first.user == ALICE
    assert first.still_present is True
    assert first.members == [BOB, ALICE]  # alice's remaining connection joined after bob
    last = await store.leave(8, origin("c3", gateway="gw-b"))
    assert last is not None
    assert (last.user, last.still_present, last.members) == (ALICE, False, [BOB])


async def test_leave_twice(store: PresenceStore) -> None:
    await store.join(8, origin("c1"), GUEST)
    left = await store.leave(8, origin("c1"))
    assert left is not None
    assert (left.user, left.still_present, left.members) == (GUEST, False, [])
    assert await store.leave(8, origin("c1")) is None


async def test_active_channels_follow_connection_counts(
    store: PresenceStore, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await store.join(8, origin("c1"), ALICE)
    await store.join(8, origin("c2"), BOB)
    await store.join(9, origin("c1"), ALICE)
    assert await redis_client.zscore(keys.active_channels, "8") == 2
    await store.leave(8, origin("c1"))
    assert await redis_client.zscore(keys.active_channels, "8") == 1
    await store.leave(8, origin("c2"))
    assert await redis_client.zscore(keys.active_channels, "8") is None
    assert await redis_client.exists(keys.channel_conns(8)) == 0
    assert await redis_client.zscore(keys.active_channels, "9") == 1


async def channel_pairs(store: PresenceStore, gateway: str) -> list[tuple[int, str]]:
    pairs, _ = await store.gateway_connections(gateway)
    return sorted(pairs)


async def test_gateway_connections(store: PresenceStore) -> None:
    await store.join(8, origin("c1"), ALICE)
    await store.join(9, origin("c1"), ALICE)
    await store.join(-3, origin("c2"), BOB)
    await store.join(8, origin("c9", gateway="gw-b"), BOB)
    assert await channel_pairs(store, "gw-a") == [(-3, "c2"), (8, "c1"), (9, "c1")]
    assert await store.gateway_connections("gw-b") == ([(8, "c9")], [])
    await store.leave(9, origin("c1"))
    assert await channel_pairs(store, "gw-a") == [(-3, "c2"), (8, "c1")]
    assert await store.gateway_connections("gw-unknown") == ([], [])


async def test_connection_ids_with_pipes(store: PresenceStore) -> None:
    await store.join(8, origin("c|1"), ALICE)
    assert await store.set_online(origin("c|1"), "alice", True) == 1
    assert await store.gateway_connections("gw-a") == ([(8, "c|1")], ["c|1"])
    left = await store.leave(8, origin("c|1"))
    assert left is not None
    assert left.user == ALICE
    assert await store.set_online(origin("c|1"), "", False) == 0
    assert await store.gateway_connections("gw-a") == ([], [])


async def test_online_counts_live_connections_per_user(
    store: PresenceStore, redis_client: aioredis.Redis, keys: Keys
) -> None:
    assert await store.set_online(origin("c1"), "alice", True) == 1
    assert await store.set_online(origin("c1"), "alice", True) == -1  # repeated: no change
    assert await store.set_online(origin("c2", gateway="gw-b"), "alice", True) == 2
    assert await store.set_online(origin("c3"), "bob", True) == 1
    assert await redis_client.hgetall(keys.online_users) == {b"alice": b"2", b"bob": b"1"}
    # Closing needs no username: the connection's entry names its user.
    assert await store.set_online(origin("c1"), "", False) == 1
    assert await store.set_online(origin("c1"), "", False) == -1  # late or repeated
    assert await store.set_online(origin("c2", gateway="gw-b"), "", False) == 0
    assert await redis_client.hgetall(keys.online_users) == {b"bob": b"1"}
    assert await redis_client.hkeys(keys.online_conns) == [b"gw-a|c3"]


async def test_closing_an_unknown_connection_changes_nothing(
    store: PresenceStore, redis_client: aioredis.Redis, keys: Keys
) -> None:
    await store.set_online(origin("c1"), "alice", True)
    assert await store.set_online(origin("c1", gateway="gw-b"), "alice", False) == -1
    assert await redis_client.hgetall(keys.online_users) == {b"alice": b"1"}


async def test_online_connections_are_indexed_by_gateway(store: PresenceStore) -> None:
    await store.set_online(origin("c1"), "alice", True)
    await store.set_online(origin("c2"), "bob", True)
    await store.join(8, origin("c1"), ALICE)
    pairs, online = await store.gateway_connections("gw-a")
    assert (pairs, sorted(online)) == ([(8, "c1")], ["c1", "c2"])
    await store.set_online(origin("c2"), "", False)
    assert await store.gateway_connections("gw-a") == ([(8, "c1")], ["c1"])


async def test_dead_gateways(
    store: PresenceStore, redis_client: aioredis.Redis, keys: Keys
) -> None:
    assert await store.dead_gateways() == []
    now_ms = int(time.time() * 1000)
    await redis_client.zadd(
        keys.gateways,
        {"gw-dead": now_ms - 60_000, "gw-just-dead": now_ms - 1, "gw-alive": now_ms + 60_000},
    )
    assert await store.dead_gateways() == ["gw-dead", "gw-just-dead"]


async def test_forget_gateway(
    store: PresenceStore, redis_client: aioredis.Redis, keys: Keys
) -> None:
    now_ms = int(time.time() * 1000)
    await redis_client.zadd(keys.gateways, {"gw-a": now_ms - 1, "gw-b": now_ms + 60_000})
    await redis_client.hset(keys.gateway_urls, mapping={"gw-a": "ws://a/ws", "gw-b": "ws://b/ws"})
    await store.join(8, origin("c1"), ALICE)
    await store.join(8, origin("c2", gateway="gw-b"), BOB)
    await store.forget_gateway("gw-a")
    assert await store.gateway_connections("gw-a") == ([], [])
    assert await store.dead_gateways() == []
    assert await redis_client.hgetall(keys.gateway_urls) == {b"gw-b": b"ws://b/ws"}
    assert await redis_client.zrange(keys.gateways, 0, -1) == [b"gw-b"]
    assert await store.gateway_connections("gw-b") == ([(8, "c2")], [])


async def test_reaping_a_dead_gateway_leaves_its_members(store: PresenceStore) -> None:
    """The reaper's effects: each connection of the dead gateway leaves and goes offline (the
    commands may run after the gateway was forgotten), and the gateway is forgotten."""
    await store.set_online(origin("c1"), "alice", True)
    await store.join(8, origin("c1"), ALICE)
    await tick()
    await store.set_online(origin("c2", gateway="gw-b"), "bob", True)
    await store.join(8, origin("c2", gateway="gw-b"), BOB)
    pairs, online = await store.gateway_connections("gw-a")
    await store.forget_gateway("gw-a")
    for channel_id, conn in pairs:
        left = await store.leave(channel_id, origin(conn))
        assert left is not None
        assert (left.user, left.still_present, left.members) == (ALICE, False, [BOB])
    assert [await store.set_online(origin(conn), "", False) for conn in online] == [0]
    assert (await store.join(8, origin("c3", gateway="gw-b"), BOB)).members == [BOB]
    assert await store.gateway_connections("gw-a") == ([], [])


async def test_concurrent_joins_of_one_user_report_one_first_join(store: PresenceStore) -> None:
    results = await asyncio.gather(
        *(store.join(8, origin(f"c{i}", gateway=f"gw-{i % 3}"), ALICE) for i in range(10))
    )
    assert sorted(r.already_present for r in results) == [False] + [True] * 9
    assert all(r.members == [ALICE] for r in results)
