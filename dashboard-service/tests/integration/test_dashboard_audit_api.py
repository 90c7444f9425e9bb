"""``/api/v1/dashboard/audit`` [ext]: filters, order and pages, over rows written with SQL."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import httpx
import pytest

AUDIT = "/api/v1/dashboard/audit"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Caller(Protocol):
    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


Add = Callable[..., Awaitable[int]]
AssertError = Callable[..., str]  # the conftest fixtures' types


@pytest.fixture
def add(db: asyncpg.Pool) -> Add:
    async def insert(
        actor: str,
        action: str,
        target: str,
        channel_id: int | None,
        at: datetime,
        reason: str | None = None,
        expires_at: datetime | None = None,
    ) -> int:
        entry_id: int = await db.fetchval(
            "INSERT INTO audit_log (actor, action, target, channel_id, reason, expires_at,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            actor,
            action,
            target,
            channel_id,
            reason,
            expires_at,
            at,
        )
        return entry_id

    return insert


def name() -> str:
    return f"a{secrets.token_hex(5)}"


async def entries(client: httpx.AsyncClient, caller: Caller, **params: Any) -> dict[str, Any]:
    response = await client.get(AUDIT, params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["total", "total_pages", "entries"]
    return body


async def test_entry_shape(client: httpx.AsyncClient, add: Add, admin: Caller) -> None:
    actor, target = name(), name()
    mute_id = await add(actor, "mute", target, 7, T0, "spam", T0 + timedelta(minutes=10))
    kick_id = await add(actor, "kick", target, None, T0 + timedelta(seconds=1, microseconds=5))
    assert await entries(client, admin, actor=actor) == {
        "total": 2,
        "total_pages": 1,
        "entries": [
            {
                "id": kick_id,
                "actor": actor,
                "action": "kick",
                "target": target,
                "channel_id": None,
                "reason": None,
                "expires_at": None,
                "created_at": "2024-05-01T12:00:01.000005Z",
            },
            {
                "id": mute_id,
                "actor": actor,
                "action": "mute",
                "target": target,
                "channel_id": 7,
                "reason": "spam",
                "expires_at": "2024-05-01T12:10:00Z",
                "created_at": "2024-05-01T12:00:00Z",
            },
        ],
    }


async def test_newest_first_then_latest_id(
    client: httpx.AsyncClient, add: Add, moderator: Caller
) -> None:
    actor = name()
    late = await add(actor, "ban", "x", 1, T0 + timedelta(hours=1))
    tie_a = await add(actor, "mute", "x", 1, T0)
    tie_b = await add(actor, "unmute", "x", 1, T0)
    early = await add(actor, "unban", "x", 1, T0 - timedelta(days=1))
    body = await entries(client, moderator, actor=actor)
    assert [e["id"] for e in body["entries"]] == [late, tie_b, tie_a, early]


async def test_filters_combine(client: httpx.AsyncClient, add: Add, admin: Caller) -> None:
    alice, bob, carol, dave = name(), name(), name(), name()
    rows = {
        "a": await add(alice, "mute", carol, 1, T0),
        "b": await add(alice, "ban", carol, 2, T0 + timedelta(seconds=1)),
        "c": await add(alice, "mute", dave, 1, T0 + timedelta(seconds=2)),
        "d": await add(bob, "mute", carol, 1, T0 + timedelta(seconds=3)),
        "e": await add(bob, "kick", dave, 2, T0 + timedelta(seconds=4)),
    }

    async def ids(**params: Any) -> list[str]:
        body = await entries(client, admin, page_size=100, **params)
        by_id = {v: k for k, v in rows.items()}
        found = [by_id[e["id"]] for e in body["entries"] if e["id"] in by_id]
        return found

    assert await ids(actor=alice) == ["c", "b", "a"]
    assert await ids(target=carol) == ["d", "b", "a"]
    assert await ids(actor=alice, target=carol) == ["b", "a"]
    assert await ids(actor=alice, action="mute") == ["c", "a"]
    assert await ids(actor=alice, action="mute", channel_id=1) == ["c", "a"]
    assert await ids(actor=alice, action="mute", channel_id=1, target=dave) == ["c"]
    assert await ids(target=dave, channel_id="2") == ["e"]
    assert await ids(actor=bob, action="ban") == []
    assert await ids(actor=alice.upper()) == []  # usernames are case-sensitive
    # Empty filters are no filters (clients send every key, empty or not).
    assert await ids(actor=bob, target="", action="", channel_id="") == ["e", "d"]
    body = await entries(client, admin, actor=alice, action="mute")
    assert body["total"] == 2


async def test_filter_by_channel_counts_everything_there(
    client: httpx.AsyncClient, db: asyncpg.Pool, add: Add, admin: Caller
) -> None:
    channel_id = 1_500_000_000 + secrets.randbelow(500_000_000)
    for i in range(3):
        await add(name(), "kick", name(), channel_id, T0 + timedelta(seconds=i))
    body = await entries(client, admin, channel_id=channel_id)
    assert body["total"] == 3
    assert [e["channel_id"] for e in body["entries"]] == [channel_id] * 3


@pytest.mark.parametrize(
    ("page", "page_size", "expected", "total_pages"),
    [
        (1, 20, list(range(6, -1, -1)), 1),
        (1, 3, [6, 5, 4], 3),
        (2, 3, [3, 2, 1], 3),
        (3, 3, [0], 3),
        (4, 3, [], 3),
        (1, 7, list(range(6, -1, -1)), 1),
        (2, 7, [], 1),
        (10**15, 100, [], 1),
    ],
)
async def test_pages(
    client: httpx.AsyncClient,
    add: Add,
    admin: Caller,
    page: int,
    page_size: int,
    expected: list[int],
    total_pages: int,
) -> None:
    actor = name()
    ids = [await add(actor, "mute", f"t{i}", 1, T0 + timedelta(minutes=i)) for i in range(7)]
    body = await entries(client, admin, actor=actor, page=page, page_size=page_size)
    assert body["total"] == 7
    assert body["total_pages"] == total_pages
    assert [e["id"] for e in body["entries"]] == [ids[i] for i in expected]


async def test_no_entries(client: httpx.AsyncClient, admin: Caller) -> None:
    assert await entries(client, admin, actor=name()) == {
        "total": 0,
        "total_pages": 0,
        "entries": [],
    }


async def test_unfiltered_is_the_whole_log_newest_first(
    client: httpx.AsyncClient, db: asyncpg.Pool, add: Add, admin: Caller
) -> None:
    await add(name(), "kick", name(), 3, datetime.now(UTC))
    body = await entries(client, admin, page_size=100)
    assert body["total"] == await db.fetchval("SELECT count(*) FROM audit_log")
    keys = [(e["created_at"], e["id"]) for e in body["entries"]]
    as_times = [(datetime.fromisoformat(at), i) for at, i in keys]
    assert as_times == sorted(as_times, reverse=True)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"page": 0}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"action": "warn"}, "action"),
        ({"channel_id": "abc"}, "channel_id"),
        ({"channel_id": "2147483648"}, "channel_id"),
        ({"channel_id": "1.5"}, "channel_id"),
    ],
)
async def test_validation_is_422(
    client: httpx.AsyncClient,
    admin: Caller,
    params: dict[str, Any],
    key: str,
    assert_error: AssertError,
) -> None:
    detail = assert_error(await client.get(AUDIT, params=params, headers=admin.headers), 422)
    assert detail.startswith(f"Invalid request: {key}: ")
