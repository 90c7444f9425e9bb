"""``/api/v1/dashboard/users``: list, search, read, and a user's messages; real PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import httpx
import pytest

USERS = "/api/v1/dashboard/users"
PASSWORD = "Secret123"
FORBIDDEN = "You don't have permission to access this resource."


class Caller(Protocol):
    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]

# The types of conftest's shared helper fixtures.
AssertError = Callable[..., str]
RowOf = Callable[[asyncpg.Pool, int], Awaitable[dict[str, Any]]]
SameUser = Callable[[dict[str, Any], dict[str, Any]], None]


def tag() -> str:
    """A unique name part: searching for it finds this test's users only."""
    return f"t{secrets.token_hex(4)}"


async def names(client: httpx.AsyncClient, caller: Caller, **params: Any) -> list[str]:
    response = await client.get(USERS, params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    return [user["username"] for user in response.json()["users"]]


# -- list ----------------------------------------------------------------------------------------


async def test_list_has_the_exact_shape(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    row_of: RowOf,
    same_user: SameUser,
) -> None:
    t = tag()
    first = await make_user(username=f"{t}-a")
    second = await make_user("moderator", username=f"{t}-b")
    response = await client.get(f"{USERS}/", params={"search": t}, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["total_users", "total_pages", "users"]
    assert body["total_users"] == 2
    assert body["total_pages"] == 1
    assert len(body["users"]) == 2
    same_user(body["users"][0], await row_of(db, first.id))
    same_user(body["users"][1], await row_of(db, second.id))
    assert body["users"][1]["role"] == "moderator"


async def test_list_with_and_without_trailing_slash(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    t = tag()
    await make_user(username=f"{t}-x")
    with_slash = await client.get(f"{USERS}/", params={"search": t}, headers=admin.headers)
    without = await client.get(USERS, params={"search": t}, headers=admin.headers)
    assert with_slash.status_code == without.status_code == 200
    assert with_slash.json() == without.json()
    assert with_slash.json()["total_users"] == 1


async def test_list_defaults_to_page_1_of_10(
    client: httpx.AsyncClient, db: asyncpg.Pool, admin: Caller
) -> None:
    response = await client.get(f"{USERS}/", headers=admin.headers)
    body = response.json()
    total = await db.fetchval("SELECT count(*) FROM users")
    assert body["total_users"] == total
    assert body["total_pages"] == -(-total // 10)
    assert len(body["users"]) == min(10, total)


async def test_list_sorts_by_username_ignoring_case(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    t = tag()
    for suffix in ["b", "C", "a", "A", "ab"]:
        await make_user(username=f"{t}{suffix}")
    assert await names(client, admin, search=t) == [f"{t}{s}" for s in ["A", "a", "ab", "b", "C"]]


@pytest.mark.parametrize(
    ("page", "page_size", "expected", "total_pages"),
    [
        (1, 2, [0, 1], 3),
        (2, 2, [2, 3], 3),
        (3, 2, [4], 3),
        (4, 2, [], 3),
        (1, 5, [0, 1, 2, 3, 4], 1),
        (2, 5, [], 1),
        (1, 4, [0, 1, 2, 3], 2),
        (1, 100, [0, 1, 2, 3, 4], 1),
        (10**12, 100, [], 1),
    ],
)
async def test_list_pages(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    admin: Caller,
    page: int,
    page_size: int,
    expected: list[int],
    total_pages: int,
) -> None:
    t = tag()
    created = [f"{t}{i}" for i in range(5)]
    for name in created:
        await make_user(username=name)
    response = await client.get(
        USERS, params={"search": t, "page": page, "page_size": page_size}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total_users"] == 5
    assert body["total_pages"] == total_pages
    assert [u["username"] for u in body["users"]] == [created[i] for i in expected]


async def test_list_without_matches_has_no_pages(client: httpx.AsyncClient, admin: Caller) -> None:
    response = await client.get(USERS, params={"search": tag()}, headers=admin.headers)
    assert response.json() == {"total_users": 0, "total_pages": 0, "users": []}


async def test_search_ignores_case(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    t = tag()
    await make_user(username=f"{t}AlphaBeta")
    await make_user(username=f"{t}gamma")
    assert await names(client, admin, search=f"{t}alphabeta") == [f"{t}AlphaBeta"]
    assert await names(client, admin, search=f"{t.upper()}ALPHA") == [f"{t}AlphaBeta"]
    assert await names(client, admin, search=f"{t}GAM") == [f"{t}gamma"]


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("%", ["%x"]),
        ("_", ["_x"]),
        ("\\", ["\\x"]),
        ("%x", ["%x"]),
        ("a%x", []),
        ("a_x", []),
        ("A", ["aax", "ax"]),
        ("", ["%x", "\\x", "_x", "aax", "ax"]),
    ],
    ids=[
        "percent",
        "underscore",
        "backslash",
        "percent-x",
        "a-percent",
        "a-underscore",
        "A",
        "all",
    ],
)
async def test_search_takes_like_wildcards_literally(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller, term: str, found: list[str]
) -> None:
    t = tag()
    for suffix in ["%x", "_x", "\\x", "ax", "aax"]:
        await make_user(username=f"{t}{suffix}")
    # Unescaped, "%" and "_" would match all five and a trailing "\\" would be an SQL error.
    assert await names(client, admin, search=f"{t}{term}") == [f"{t}{s}" for s in found]


async def test_registered_only_leaves_guests_out(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    digits = str(10**11 + secrets.randbelow(10**11))
    guest = await make_user(is_guest=True, username=f"Guest{digits}")
    account = await make_user(username=f"u{digits}")
    assert await names(client, admin, search=digits) == [guest.username, account.username]
    assert await names(client, admin, search=digits, registered_only="true") == [account.username]
    assert await names(client, admin, search=digits, registered_only="false") == [
        guest.username,
        account.username,
    ]
    response = await client.get(USERS, params={"search": digits}, headers=admin.headers)
    listed_guest = response.json()["users"][0]
    assert listed_guest["is_guest"] is True
    assert listed_guest["role"] == "guest"


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": "x"}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"registered_only": "maybe"}, "registered_only"),
        ({"search": "x" * 101}, "search"),
    ],
)
async def test_list_validation_is_422_with_string_detail(
    client: httpx.AsyncClient,
    admin: Caller,
    params: dict[str, Any],
    key: str,
    assert_nonempty_error: AssertError,
) -> None:
    response = await client.get(f"{USERS}/", params=params, headers=admin.headers)
    detail = assert_nonempty_error(response, 422)
    assert detail.startswith(f"Invalid request: {key}: ")


async def test_moderators_may_list(client: httpx.AsyncClient, moderator: Caller) -> None:
    response = await client.get(
        USERS, params={"search": moderator.username}, headers=moderator.headers
    )
    assert response.status_code == 200
    assert [u["username"] for u in response.json()["users"]] == [moderator.username]


# -- read ----------------------------------------------------------------------------------------


async def test_get_user(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    row_of: RowOf,
    same_user: SameUser,
) -> None:
    for target in [await make_user(), await make_user(is_guest=True)]:
        response = await client.get(f"{USERS}/{target.id}", headers=admin.headers)
        assert response.status_code == 200, response.text
        same_user(response.json(), await row_of(db, target.id))


@pytest.mark.parametrize("user_id", [0, -5, 2**62, 2**63, 10**30])
async def test_get_unknown_user_is_404(
    client: httpx.AsyncClient,
    admin: Caller,
    user_id: int,
    assert_nonempty_error: AssertError,
) -> None:
    response = await client.get(f"{USERS}/{user_id}", headers=admin.headers)
    assert_nonempty_error(response, 404, "User not found")


# -- messages ------------------------------------------------------------------------------------


async def add_message(
    db: asyncpg.Pool, channel_id: int, sender: Caller, content: str, at: datetime
) -> None:
    seq = await db.fetchval(
        "UPDATE channels SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", channel_id
    )
    await db.execute(
        "INSERT INTO messages (id, channel_id, seq, sender_id, sender_username, sender_is_guest,"
        " content, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        uuid.uuid4(),
        channel_id,
        seq,
        sender.id,
        sender.username,
        sender.is_guest,
        content,
        at,
    )


async def test_user_messages_newest_first(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    sender, other = await make_user(), await make_user()
    first, second = await create_channel(), await create_channel()
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    await add_message(db, first, sender, "one", start)
    await add_message(db, second, sender, "two", start + timedelta(seconds=1))
    await add_message(db, first, other, "not theirs", start + timedelta(seconds=2))
    await add_message(db, first, sender, "three", start + timedelta(seconds=3, microseconds=250))
    response = await client.get(f"{USERS}/{sender.id}/messages", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "count": 3,
        "messages": [
            {
                "channel_id": first,
                "sender_username": sender.username,
                "timestamp": "2024-05-01T12:00:03.000250Z",
                "content": "three",
            },
            {
                "channel_id": second,
                "sender_username": sender.username,
                "timestamp": "2024-05-01T12:00:01Z",
                "content": "two",
            },
            {
                "channel_id": first,
                "sender_username": sender.username,
                "timestamp": "2024-05-01T12:00:00Z",
                "content": "one",
            },
        ],
    }


async def test_user_messages_pages(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    sender = await make_user(is_guest=True)
    channel_id = await create_channel()
    start = datetime(2024, 5, 1, tzinfo=UTC)
    for i in range(15):
        await add_message(db, channel_id, sender, f"m{i}", start + timedelta(minutes=i))

    async def page(**params: int) -> tuple[int, list[str]]:
        response = await client.get(
            f"{USERS}/{sender.id}/messages", params=params, headers=moderator.headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return body["count"], [m["content"] for m in body["messages"]]

    assert await page() == (15, [f"m{i}" for i in range(14, 4, -1)])
    assert await page(offset=10) == (15, ["m4", "m3", "m2", "m1", "m0"])
    assert await page(offset=3, limit=2) == (15, ["m11", "m10"])
    assert await page(offset=15) == (15, [])
    assert await page(offset=10**19) == (15, [])
    assert await page(limit=100) == (15, [f"m{i}" for i in range(14, -1, -1)])


async def test_user_without_messages(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    target = await make_user()
    response = await client.get(f"{USERS}/{target.id}/messages", headers=admin.headers)
    assert response.json() == {"count": 0, "messages": []}


async def test_messages_of_unknown_user_is_404(
    client: httpx.AsyncClient, admin: Caller, assert_nonempty_error: AssertError
) -> None:
    response = await client.get(f"{USERS}/{2**62}/messages", headers=admin.headers)
    assert_nonempty_error(response, 404, "User not found")


@pytest.mark.parametrize(
    ("params", "key"),
    [({"offset": -1}, "offset"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit")],
)
async def test_messages_validation_is_422(
    client: httpx.AsyncClient,
    admin: Caller,
    params: dict[str, int],
    key: str,
    assert_nonempty_error: AssertError,
) -> None:
    response = await client.get(
        f"{USERS}/{admin.id}/messages", params=params, headers=admin.headers
    )
    assert assert_nonempty_error(response, 422).startswith(f"Invalid request: {key}: ")
