"""``/api/v1/auth``: signup rules, login tokens and ``/me``, against real PostgreSQL."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from justchat.auth import create_token, verify_token
from justchat.settings import Settings

SIGNUP = "/api/v1/auth/signup"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
PASSWORD = "Secret123"
AssertError = Callable[..., str]  # the conftest fixtures' types


def fresh_name() -> str:
    return f"u{secrets.token_hex(5)}"


async def signup(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Any:
    response = await client.post(SIGNUP, json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    return response.json()


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    response = await client.post(LOGIN, data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


# -- signup --------------------------------------------------------------------------------------


async def test_signup_returns_the_public_user(client: httpx.AsyncClient) -> None:
    name = fresh_name()
    before = datetime.now(UTC)
    response = await client.post(SIGNUP, json={"username": name, "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "is_guest", "created_at", "role"}
    assert isinstance(body["id"], int)
    assert body["username"] == name
    assert body["is_guest"] is False
    assert body["role"] == "user"
    assert body["created_at"].endswith("Z")
    created = datetime.fromisoformat(body["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= created <= datetime.now(UTC) + timedelta(seconds=5)


async def test_signup_stores_an_argon2id_hash_not_the_password(
    client: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    user = await signup(client, fresh_name())
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_signup_duplicate_is_409(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    name = fresh_name()
    await signup(client, name)
    response = await client.post(SIGNUP, json={"username": name, "password": "Other1234"})
    assert_error(response, 409, "Username already exists.")


async def test_usernames_differing_in_case_are_distinct(client: httpx.AsyncClient) -> None:
    name = fresh_name()
    first = await signup(client, name)
    second = await signup(client, name.upper())
    assert second["username"] == name.upper()
    assert second["id"] != first["id"]


async def test_signup_strips_the_username(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    name = fresh_name()
    user = await signup(client, f"  {name}\t ")
    assert user["username"] == name
    again = await client.post(SIGNUP, json={"username": f" {name} ", "password": PASSWORD})
    assert_error(again, 409, "Username already exists.")


@pytest.mark.parametrize(
    "username",
    ["ab", "   ab   ", "", "     ", "x" * 31, " " + "y" * 31],
    ids=["2-chars", "2-chars-padded", "empty", "spaces", "31-chars", "31-chars-padded"],
)
async def test_signup_rejects_bad_username_length(
    client: httpx.AsyncClient, username: str, assert_error: AssertError
) -> None:
    response = await client.post(SIGNUP, json={"username": username, "password": PASSWORD})
    detail = assert_error(response, 422)
    assert "3 to 30 characters" in detail


@pytest.mark.parametrize("length", [3, 30])
async def test_signup_accepts_username_length_bounds(
    client: httpx.AsyncClient, length: int
) -> None:
    name = (fresh_name() * 4)[:length]
    user = await signup(client, f" {name} ")
    assert user["username"] == name


@pytest.mark.parametrize("username", ["Guest1", "guest42", "GUEST007", " Guest5 ", "gUeSt123"])
async def test_signup_rejects_guest_names(
    client: httpx.AsyncClient, username: str, assert_error: AssertError
) -> None:
    response = await client.post(SIGNUP, json={"username": username, "password": PASSWORD})
    detail = assert_error(response, 422)
    assert "reserved for guests" in detail


@pytest.mark.parametrize("name", ["Guest", "Guest1a", "MyGuest1", "Guests12", "Guest 1"])
async def test_signup_allows_names_that_only_resemble_guests(
    client: httpx.AsyncClient, name: str
) -> None:
    user = await signup(client, name)
    assert user["username"] == name


async def test_signup_rejects_control_characters(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    response = await client.post(SIGNUP, json={"username": "bad\x00name", "password": PASSWORD})
    assert "control characters" in assert_error(response, 422)


@pytest.mark.parametrize(
    ("password", "missing"),
    [
        ("Short1A", "at least 8 characters"),
        ("lowercase1", "an uppercase letter"),
        ("UPPERCASE1", "a lowercase letter"),
        ("NoDigitsHere", "a digit"),
    ],
)
async def test_signup_password_rules(
    client: httpx.AsyncClient, password: str, missing: str, assert_error: AssertError
) -> None:
    response = await client.post(SIGNUP, json={"username": fresh_name(), "password": password})
    detail = assert_error(response, 422)
    assert missing in detail
    assert detail.startswith("Password must contain")


async def test_signup_password_detail_lists_every_problem(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    response = await client.post(SIGNUP, json={"username": fresh_name(), "password": "abc"})
    detail = assert_error(response, 422)
    assert detail == "Password must contain at least 8 characters, an uppercase letter and a digit."


async def test_rejected_signup_creates_nothing(client: httpx.AsyncClient, db: asyncpg.Pool) -> None:
    name = fresh_name()
    await client.post(SIGNUP, json={"username": name, "password": "weak"})
    assert await db.fetchval("SELECT count(*) FROM users WHERE username = $1", name) == 0


@pytest.mark.parametrize(
    "body",
    [{"username": "alice"}, {"password": PASSWORD}, {"username": 5, "password": PASSWORD}, [1]],
    ids=["no-password", "no-username", "int-username", "array"],
)
async def test_signup_malformed_body_is_422_with_string_detail(
    client: httpx.AsyncClient, body: Any, assert_error: AssertError
) -> None:
    response = await client.post(SIGNUP, json=body)
    assert assert_error(response, 422).startswith("Invalid request: ")


async def test_signup_without_body_is_422(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    response = await client.post(SIGNUP)
    assert assert_error(response, 422) == "Invalid request: the request body is missing"


# -- login ---------------------------------------------------------------------------------------


async def test_login_returns_a_token_for_the_user(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await signup(client, fresh_name())
    response = await client.post(LOGIN, data={"username": user["username"], "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.token_ttl_s == 900
    claims = verify_token(body["access_token"], settings.jwt_secret)
    assert claims.user_id == user["id"]
    assert claims.username == user["username"]
    assert claims.role == "user"
    assert abs(claims.expires_at - (time.time() + settings.token_ttl_s)) < 10


async def test_login_wrong_password_is_401(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    user = await signup(client, fresh_name())
    response = await client.post(LOGIN, data={"username": user["username"], "password": "Nope1234"})
    assert_error(response, 401, "Incorrect username or password")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_login_unknown_user_is_401(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    response = await client.post(LOGIN, data={"username": fresh_name(), "password": PASSWORD})
    assert_error(response, 401, "Incorrect username or password")


async def test_login_is_case_sensitive(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    user = await signup(client, fresh_name())
    response = await client.post(
        LOGIN, data={"username": user["username"].upper(), "password": PASSWORD}
    )
    assert_error(response, 401, "Incorrect username or password")


async def test_login_refuses_guests(
    client: httpx.AsyncClient, db: asyncpg.Pool, assert_error: AssertError
) -> None:
    name = f"Guest{secrets.randbelow(10**9)}"
    await db.execute(
        "INSERT INTO users (username, password_hash, is_guest, role) VALUES ($1, NULL, true,"
        " 'guest')",
        name,
    )
    response = await client.post(LOGIN, data={"username": name, "password": ""})
    assert_error(response, 401, "Incorrect username or password")


async def test_login_with_json_is_a_client_error(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    user = await signup(client, fresh_name())
    response = await client.post(LOGIN, json={"username": user["username"], "password": PASSWORD})
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


@pytest.mark.parametrize("form", [{"username": "someone"}, {"password": PASSWORD}, {}])
async def test_login_missing_field_is_422(
    client: httpx.AsyncClient, form: dict[str, str], assert_error: AssertError
) -> None:
    response = await client.post(
        LOGIN, data=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert assert_error(response, 422).startswith("Invalid request: ")


# -- me ------------------------------------------------------------------------------------------


async def test_me_returns_the_caller(client: httpx.AsyncClient) -> None:
    user = await signup(client, fresh_name())
    token = await login(client, user["username"])
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == user


async def test_me_without_token_is_401(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    response = await client.get(ME)
    assert_error(response, 401, "Not authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token"])
async def test_me_without_bearer_token_is_401(
    client: httpx.AsyncClient, header: str, assert_error: AssertError
) -> None:
    response = await client.get(ME, headers={"Authorization": header})
    assert_error(response, 401, "Not authenticated")


async def test_me_with_garbage_token_is_401(
    client: httpx.AsyncClient, assert_error: AssertError
) -> None:
    response = await client.get(ME, headers={"Authorization": "Bearer not.a.jwt"})
    assert_error(response, 401, "Could not validate credentials")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("case", ["wrong-secret", "expired"])
async def test_me_rejects_forged_and_expired_tokens(
    client: httpx.AsyncClient, settings: Settings, case: str, assert_error: AssertError
) -> None:
    user = await signup(client, fresh_name())
    secret = "y" * 40 if case == "wrong-secret" else settings.jwt_secret
    issued = time.time() - (3600 if case == "expired" else 0)
    token = create_token(
        user_id=user["id"],
        username=user["username"],
        role="user",
        secret=secret,
        ttl_s=60,
        now=issued,
    )
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 401, "Could not validate credentials")


async def test_me_for_a_deleted_user_is_404(
    client: httpx.AsyncClient, db: asyncpg.Pool, assert_error: AssertError
) -> None:
    user = await signup(client, fresh_name())
    token = await login(client, user["username"])
    await db.execute("DELETE FROM users WHERE id = $1", user["id"])
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 404, "User not found")
