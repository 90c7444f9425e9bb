"""``/api/v1/dashboard/channels``: live channels and members, from Redis keys set up here.

The keys are written the way presence-service writes them (see ``justchat.keys``), under this
session's prefix; channel rows go into PostgreSQL directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from justchat.keys import Keys
from justchat.settings import Settings

ACTIVE = "/api/v1/dashboard/channels/active"
MEMBERS = "/api/v1/dashboard/channels/members"

Serve = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


class Caller(Protocol):
    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]


def assert_error(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"detail": detail}


@pytest.fixture
async def no_active_channels(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[None]:
    await redis.delete(keys.active_channels)
    yield
    await redis.delete(keys.active_channels)


# -- active channels -----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_active_channels")
async def test_active_channels_sorted_by_id(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, admin: Caller
) -> None:
    # Scores are live connection counts; ids sort as numbers, not as text.
    await redis.zadd(keys.active_channels, {"12": 1, "5": 3, "100": 2, "-3": 1})
    response = await client.get(ACTIVE, headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "count": 4,
        "channels": [{"id": -3}, {"id": 5}, {"id": 12}, {"id": 100}],
    }


@pytest.mark.usefixtures("no_active_channels")
async def test_a_channel_leaves_when_its_last_connection_does(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, moderator: Caller
) -> None:
    await redis.zadd(keys.active_channels, {"7": 2, "8": 1})
    await redis.zrem(keys.active_channels, "8")  # what presence-service does at count 0
    # A count of 0 left behind is not a live member either.
    await redis.zadd(keys.active_channels, {"9": 0})
    response = await client.get(ACTIVE, headers=moderator.headers)
    assert response.json() == {"count": 1, "channels": [{"id": 7}]}


@pytest.mark.usefixtures("no_active_channels")
async def test_no_active_channels(client: httpx.AsyncClient, admin: Caller) -> None:
    response = await client.get(ACTIVE, headers=admin.headers)
    assert response.json() == {"count": 0, "channels": []}


@pytest.mark.usefixtures("no_active_channels")
async def test_active_channels_skip_malformed_members(
    client: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, admin: Caller
) -> None:
    await redis.zadd(keys.active_channels, {"4": 1, "not-a-channel": 1})
    response = await client.get(ACTIVE, headers=admin.headers)
    assert response.json() == {"count": 1, "channels": [{"id": 4}]}


async def test_live_routes_are_503_without_redis(
    settings: Settings, serve: Serve, admin: Caller, create_channel: Callable[[], Awaitable[int]]
) -> None:
    channel_id = await create_channel()
    broken = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with serve(broken) as http:
        active = await http.get(ACTIVE, headers=admin.headers)
        members = await http.get(f"{MEMBERS}/{channel_id}", headers=admin.headers)
    assert_error(active, 503, "Live presence is unavailable; try again.")
    assert_error(members, 503, "Live presence is unavailable; try again.")


# -- members -------------------------------------------------------------------------------------


async def test_members_each_user_once_in_order_of_arrival(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    keys: Keys,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id = await create_channel()
    alice, guest, bob = await make_user(), await make_user(is_guest=True), await make_user()
    await redis.hset(
        keys.channel_conns(channel_id),
        mapping={
            # alice has two tabs on two gateways: she counts once, from her first.
            "gw-a|c1": f"3000|0|{alice.username}",
            "gw-b|c7": f"1000|0|{alice.username}",
            "gw-a|c2": f"2000|1|{guest.username}",
            "gw-b|c8": f"2500|0|{bob.username}",
            # A name without a row (deleted while connected) cannot be given an id.
            "gw-a|c3": "1500|0|nobody-by-this-name",
            "gw-a|c4": "garbage",
        },
    )
    response = await client.get(f"{MEMBERS}/{channel_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "count": 3,
        "users": [
            {"id": alice.id, "username": alice.username, "is_guest": False},
            {"id": guest.id, "username": guest.username, "is_guest": True},
            {"id": bob.id, "username": bob.username, "is_guest": False},
        ],
    }


async def test_members_names_may_contain_the_separator(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    keys: Keys,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id = await create_channel()
    odd = await make_user(username=f"a|b|{channel_id}")
    await redis.hset(keys.channel_conns(channel_id), "gw|c", f"1|0|{odd.username}")
    response = await client.get(f"{MEMBERS}/{channel_id}", headers=moderator.headers)
    assert response.json()["users"] == [{"id": odd.id, "username": odd.username, "is_guest": False}]


async def test_members_of_a_quiet_channel(
    client: httpx.AsyncClient, admin: Caller, create_channel: Callable[[], Awaitable[int]]
) -> None:
    channel_id = await create_channel()
    response = await client.get(f"{MEMBERS}/{channel_id}", headers=admin.headers)
    assert response.json() == {"count": 0, "users": []}


@pytest.mark.parametrize("channel_id", ["2147483000", "2147483648", "99999999999", "-1"])
async def test_members_of_unknown_channel_is_404(
    client: httpx.AsyncClient, admin: Caller, channel_id: str
) -> None:
    response = await client.get(f"{MEMBERS}/{channel_id}", headers=admin.headers)
    assert_error(response, 404, "Channel doesn't exist")


async def test_members_need_the_channel_row_not_just_redis(
    client: httpx.AsyncClient,
    redis: aioredis.Redis,
    keys: Keys,
    admin: Caller,
    new_channel_id: Callable[[], int],
) -> None:
    channel_id = new_channel_id()
    await redis.hset(keys.channel_conns(channel_id), "gw|c", f"1|0|{admin.username}")
    response = await client.get(f"{MEMBERS}/{channel_id}", headers=admin.headers)
    assert_error(response, 404, "Channel doesn't exist")
