"""``/api/v1/dashboard/users/{id}``: edits (PATCH) and deletions, with who may do what."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
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


# -- edit ----------------------------------------------------------------------------------------


async def test_patch_username(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    row_of: RowOf,
    same_user: SameUser,
) -> None:
    target = await make_user()
    new_name = f"n{secrets.token_hex(5)}"
    response = await client.patch(
        f"{USERS}/{target.id}", json={"username": f"  {new_name} "}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    expected = await row_of(db, target.id)
    assert expected["username"] == new_name
    same_user(response.json(), expected)


async def test_patch_password_lets_the_user_log_in_with_it(
    client: httpx.AsyncClient, moderator: Caller
) -> None:
    name = f"p{secrets.token_hex(5)}"
    signup = await client.post("/api/v1/auth/signup", json={"username": name, "password": PASSWORD})
    user_id = signup.json()["id"]
    response = await client.patch(
        f"{USERS}/{user_id}", json={"password": "Changed999"}, headers=moderator.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == signup.json()
    old = await client.post("/api/v1/auth/login", data={"username": name, "password": PASSWORD})
    new = await client.post("/api/v1/auth/login", data={"username": name, "password": "Changed999"})
    assert old.status_code == 401
    assert new.status_code == 200


async def test_patch_nothing_changes_nothing(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    row_of: RowOf,
    same_user: SameUser,
) -> None:
    target = await make_user()
    before = await row_of(db, target.id)
    for body in [{}, {"username": None, "password": None, "role": None}, {"unknown": 1}]:
        response = await client.patch(f"{USERS}/{target.id}", json=body, headers=admin.headers)
        assert response.status_code == 200, response.text
        same_user(response.json(), before)
    assert await row_of(db, target.id) == before


async def test_patch_to_a_taken_username_is_409(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    assert_nonempty_error: AssertError,
    row_of: RowOf,
) -> None:
    target, other = await make_user(), await make_user()
    response = await client.patch(
        f"{USERS}/{target.id}", json={"username": other.username}, headers=admin.headers
    )
    assert_nonempty_error(response, 409, "Username in use")
    assert (await row_of(db, target.id))["username"] == target.username


async def test_patch_to_its_own_username_is_fine(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    target = await make_user()
    response = await client.patch(
        f"{USERS}/{target.id}", json={"username": target.username}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["username"] == target.username


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"username": "ab"}, "3 to 30 characters"),
        ({"username": "x" * 31}, "3 to 30 characters"),
        ({"username": "Guest12"}, "reserved for guests"),
        ({"username": "bad\x07name"}, "control characters"),
        ({"password": "short"}, "Password must contain at least 8 characters"),
        ({"password": "alllowercase1"}, "Password must contain an uppercase letter."),
        ({"username": 5}, "Invalid request: username: "),
        ({"role": "superuser"}, "Invalid request: role: "),
        ({"role": "guest"}, "Invalid request: role: "),
    ],
)
async def test_patch_follows_the_signup_rules(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    body: dict[str, Any],
    fragment: str,
    assert_nonempty_error: AssertError,
    row_of: RowOf,
) -> None:
    target = await make_user()
    before = await row_of(db, target.id)
    response = await client.patch(f"{USERS}/{target.id}", json=body, headers=admin.headers)
    assert fragment in assert_nonempty_error(response, 422)
    assert await row_of(db, target.id) == before


@pytest.mark.parametrize("body", [[1], "text", None])
async def test_patch_needs_a_json_object(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    admin: Caller,
    body: Any,
    assert_nonempty_error: AssertError,
) -> None:
    target = await make_user()
    response = await client.patch(f"{USERS}/{target.id}", json=body, headers=admin.headers)
    assert assert_nonempty_error(response, 422).startswith("Invalid request: ")


async def test_patch_unknown_user_is_404(
    client: httpx.AsyncClient, admin: Caller, assert_nonempty_error: AssertError
) -> None:
    response = await client.patch(
        f"{USERS}/{2**62}", json={"username": "whoever"}, headers=admin.headers
    )
    assert_nonempty_error(response, 404, "User not found")


async def test_admin_sets_roles(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    target = await make_user()
    assert (await client.get(USERS, headers=target.headers)).status_code == 403
    response = await client.patch(
        f"{USERS}/{target.id}", json={"role": "moderator"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "moderator"
    # The same token now opens the dashboard: the guard reads the stored role.
    assert (await client.get(USERS, headers=target.headers)).status_code == 200
    back = await client.patch(f"{USERS}/{target.id}", json={"role": "user"}, headers=admin.headers)
    assert back.json()["role"] == "user"
    assert (await client.get(USERS, headers=target.headers)).status_code == 403


async def test_moderators_may_not_set_roles(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    assert_nonempty_error: AssertError,
    row_of: RowOf,
) -> None:
    target = await make_user()
    for role in ["admin", "moderator", "user"]:
        response = await client.patch(
            f"{USERS}/{target.id}", json={"role": role}, headers=moderator.headers
        )
        assert_nonempty_error(response, 403, "Only an admin may change roles.")
    assert (await row_of(db, target.id))["role"] == "user"


@pytest.mark.parametrize("body", [{"username": "renamed1"}, {"password": "Changed999"}])
async def test_only_admins_edit_admins(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    admin: Caller,
    body: dict[str, str],
    assert_nonempty_error: AssertError,
    row_of: RowOf,
) -> None:
    other_admin = await make_user("admin")
    before = await row_of(db, other_admin.id)
    response = await client.patch(f"{USERS}/{other_admin.id}", json=body, headers=moderator.headers)
    assert_nonempty_error(response, 403, "Only an admin may change or delete an admin.")
    assert await row_of(db, other_admin.id) == before
    name = f"r{secrets.token_hex(5)}"
    by_admin = await client.patch(
        f"{USERS}/{other_admin.id}", json={"username": name}, headers=admin.headers
    )
    assert by_admin.json()["username"] == name


async def test_moderators_edit_moderators(
    client: httpx.AsyncClient, make_user: MakeUser, moderator: Caller
) -> None:
    other = await make_user("moderator")
    name = f"m{secrets.token_hex(5)}"
    response = await client.patch(
        f"{USERS}/{other.id}", json={"username": name}, headers=moderator.headers
    )
    assert response.status_code == 200
    assert response.json()["username"] == name


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"role": "moderator"}, "Guests cannot be given a role; they must sign up."),
        ({"password": "Secret123"}, "Guests cannot have a password; they must sign up."),
    ],
)
async def test_guests_cannot_be_promoted_or_given_a_password(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    body: dict[str, str],
    detail: str,
    assert_nonempty_error: AssertError,
) -> None:
    guest = await make_user(is_guest=True)
    response = await client.patch(f"{USERS}/{guest.id}", json=body, headers=admin.headers)
    assert_nonempty_error(response, 422, detail)
    row = await db.fetchrow("SELECT role, password_hash FROM users WHERE id = $1", guest.id)
    assert (row["role"], row["password_hash"]) == ("guest", None)


async def test_an_admin_cannot_change_its_own_role(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: Caller,
    assert_nonempty_error: AssertError,
    row_of: RowOf,
) -> None:
    response = await client.patch(
        f"{USERS}/{admin.id}", json={"role": "user"}, headers=admin.headers
    )
    assert_nonempty_error(response, 409, "You cannot change your own role.")
    assert (await row_of(db, admin.id))["role"] == "admin"
    same = await client.patch(f"{USERS}/{admin.id}", json={"role": "admin"}, headers=admin.headers)
    assert same.status_code == 200


# -- delete --------------------------------------------------------------------------------------


async def test_delete_user(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    assert_nonempty_error: AssertError,
) -> None:
    target = await make_user()
    response = await client.delete(f"{USERS}/{target.id}", headers=moderator.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", target.id) == 0
    assert_nonempty_error(await client.get(f"{USERS}/{target.id}", headers=moderator.headers), 404)
    again = await client.delete(f"{USERS}/{target.id}", headers=moderator.headers)
    assert_nonempty_error(again, 404, "User not found")


async def test_delete_a_guest(
    client: httpx.AsyncClient, make_user: MakeUser, admin: Caller
) -> None:
    guest = await make_user(is_guest=True)
    assert (await client.delete(f"{USERS}/{guest.id}", headers=admin.headers)).status_code == 204


async def test_delete_keeps_the_users_messages(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    admin: Caller,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    target = await make_user()
    channel_id = await create_channel()
    ids = [uuid.uuid4() for _ in range(3)]
    for seq, message_id in enumerate(ids, start=1):
        await db.execute(
            "INSERT INTO messages (id, channel_id, seq, sender_id, sender_username,"
            " sender_is_guest, content) VALUES ($1, $2, $3, $4, $5, false, $6)",
            message_id,
            channel_id,
            seq,
            target.id,
            target.username,
            f"message {seq}",
        )
    response = await client.delete(f"{USERS}/{target.id}", headers=admin.headers)
    assert response.status_code == 204, response.text
    rows = await db.fetch(
        "SELECT id, sender_id, sender_username, content FROM messages WHERE channel_id = $1"
        " ORDER BY seq",
        channel_id,
    )
    assert [(r["id"], r["sender_id"], r["sender_username"], r["content"]) for r in rows] == [
        (message_id, None, target.username, f"message {seq}")
        for seq, message_id in enumerate(ids, start=1)
    ]


async def test_deleting_yourself_is_409(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    admin: Caller,
    assert_nonempty_error: AssertError,
) -> None:
    response = await client.delete(f"{USERS}/{admin.id}", headers=admin.headers)
    assert_nonempty_error(response, 409, "You cannot delete your own account.")
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", admin.id) == 1


async def test_only_admins_delete_admins(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    moderator: Caller,
    assert_nonempty_error: AssertError,
) -> None:
    target, other_admin = await make_user("admin"), await make_user("admin")
    response = await client.delete(f"{USERS}/{target.id}", headers=moderator.headers)
    assert_nonempty_error(response, 403, "Only an admin may change or delete an admin.")
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", target.id) == 1
    by_admin = await client.delete(f"{USERS}/{target.id}", headers=other_admin.headers)
    assert by_admin.status_code == 204


@pytest.mark.parametrize("user_id", [2**62, 10**30])
async def test_delete_unknown_user_is_404(
    client: httpx.AsyncClient,
    admin: Caller,
    user_id: int,
    assert_nonempty_error: AssertError,
) -> None:
    assert_nonempty_error(await client.delete(f"{USERS}/{user_id}", headers=admin.headers), 404)
