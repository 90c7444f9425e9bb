"""The first admin from JUSTCHAT_ADMIN_USERNAME / _PASSWORD, created by the lifespan if absent."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import asyncpg
import httpx
import msgspec
import pytest

from justchat.settings import Settings, from_env


class Caller(Protocol):
    id: int
    username: str


MakeUser = Callable[..., Awaitable[Caller]]
Serve = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]

LOGIN = "/api/v1/auth/login"
USERS = "/api/v1/dashboard/users"
PASSWORD = "Bootstrap123"
APP_LOGGER = "dashboard_service.app"


def admin_settings(settings: Settings, username: str, password: str = PASSWORD) -> Settings:
    """``settings`` plus the two variables, read the way ``main()`` reads them."""
    rest = {
        name: value
        for name, value in msgspec.structs.asdict(settings).items()
        if not name.startswith("admin_")
    }
    environ = {"JUSTCHAT_ADMIN_USERNAME": username, "JUSTCHAT_ADMIN_PASSWORD": password}
    return from_env(environ, **rest)


def fresh_name() -> str:
    return f"admin{secrets.token_hex(5)}"


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, data={"username": username, "password": password})


async def rows_named(db: asyncpg.Pool, username: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT id, role, is_guest, password_hash FROM users WHERE username = $1", username
        )
    )


async def test_first_start_creates_an_admin_that_can_administer(
    serve: Serve, settings: Settings, db: asyncpg.Pool, make_user: MakeUser
) -> None:
    name = fresh_name()
    assert await rows_named(db, name) == []
    async with serve(admin_settings(settings, name)) as client:
        [row] = await rows_named(db, name)
        assert row["role"] == "admin"
        assert not row["is_guest"]
        assert row["password_hash"].startswith("$argon2id$")
        assert PASSWORD not in row["password_hash"]

        response = await login(client, name, PASSWORD)
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me = await client.get("/api/v1/auth/me", headers=headers)
        assert me.json()["role"] == "admin"
        # Setting a role is for admins only (a moderator gets 403 here).
        target = await make_user("user")
        promoted = await client.patch(
            f"{USERS}/{target.id}", json={"role": "moderator"}, headers=headers
        )
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["role"] == "moderator"


async def test_surrounding_spaces_are_removed_like_at_signup(
    serve: Serve, settings: Settings, db: asyncpg.Pool
) -> None:
    name = fresh_name()
    async with serve(admin_settings(settings, f"  {name} ")) as client:
        assert [row["role"] for row in await rows_named(db, name)] == ["admin"]
        assert (await login(client, name, PASSWORD)).status_code == 200


async def test_a_later_start_leaves_an_existing_user_alone(
    serve: Serve,
    settings: Settings,
    db: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = fresh_name()
    configured = admin_settings(settings, name)
    async with serve(configured) as client:
        token = (await login(client, name, PASSWORD)).json()["access_token"]
        [row] = await rows_named(db, name)
        changed = await client.patch(
            f"{USERS}/{row['id']}",
            json={"password": "Changed456"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert changed.status_code == 200, changed.text
    # An operator demotes it by hand; neither that nor the new password may be undone.
    await db.execute("UPDATE users SET role = 'moderator' WHERE id = $1", row["id"])
    [before] = await rows_named(db, name)

    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    async with serve(configured) as client:
        assert await rows_named(db, name) == [before]
        assert (await login(client, name, PASSWORD)).status_code == 401
        assert (await login(client, name, "Changed456")).status_code == 200
    exists = [
        r
        for r in caplog.records
        if r.name == APP_LOGGER and "exists already" in r.getMessage() and name in r.getMessage()
    ]
    assert [r.levelno for r in exists] == [logging.INFO]


async def test_a_user_of_that_name_is_never_promoted(
    serve: Serve, settings: Settings, db: asyncpg.Pool, make_user: MakeUser
) -> None:
    plain = await make_user("user")
    async with serve(admin_settings(settings, plain.username)) as client:
        assert [row["role"] for row in await rows_named(db, plain.username)] == ["user"]
        # make_user's rows have no password: the configured one was not set either.
        assert (await login(client, plain.username, PASSWORD)).status_code == 401


@pytest.mark.parametrize(
    ("username", "password", "variable", "reason"),
    [
        ("root", "weakpass", "JUSTCHAT_ADMIN_PASSWORD", "an uppercase letter and a digit"),
        ("root", "Sh0rt", "JUSTCHAT_ADMIN_PASSWORD", "at least 8 characters"),
        ("ab", PASSWORD, "JUSTCHAT_ADMIN_USERNAME", "3 to 30 characters"),
        ("Guest42", PASSWORD, "JUSTCHAT_ADMIN_USERNAME", "reserved for guests"),
    ],
)
async def test_configured_credentials_breaking_the_rules_stop_start_up(
    serve: Serve,
    settings: Settings,
    db: asyncpg.Pool,
    username: str,
    password: str,
    variable: str,
    reason: str,
) -> None:
    with pytest.raises(RuntimeError, match="lifespan startup failed") as failed:
        async with serve(admin_settings(settings, username, password)):
            pytest.fail("the app started")
    message = str(failed.value)
    assert f"ConfigError: {variable} is unfit" in message
    assert reason in message
    assert password not in message  # never echo a secret into the logs
    assert await rows_named(db, username) == []


async def test_concurrent_starts_create_exactly_one_row(
    serve: Serve, settings: Settings, db: asyncpg.Pool
) -> None:
    name = fresh_name()
    configured = admin_settings(settings, name)

    async def replica() -> int:
        async with serve(configured) as client:
            return (await login(client, name, PASSWORD)).status_code

    # Two replicas start together (migrations, then the admin), like a deployment rolling out.
    assert list(await asyncio.gather(replica(), replica())) == [200, 200]
    [row] = await rows_named(db, name)
    assert row["role"] == "admin"
