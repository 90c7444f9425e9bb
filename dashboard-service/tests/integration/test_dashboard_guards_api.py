"""The ``current_user`` dependency and the role guard of the dashboard routes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import httpx
import pytest
from litestar import Litestar, get
from litestar.di import NamedDependency

from dashboard_service import create_app
from dashboard_service.guards import require_roles
from dashboard_service.store import UserRecord
from justchat.settings import Settings

ServeApp = Callable[[Litestar], AbstractAsyncContextManager[httpx.AsyncClient]]
STAFF = "/api/v1/test-only/staff"
PASSWORD = "Secret123"


@get(STAFF, guards=[require_roles("admin", "moderator")], include_in_schema=False)
async def staff_only(current_user: NamedDependency[UserRecord]) -> dict[str, str]:
    return {"username": current_user.username, "role": current_user.role}


@pytest.fixture(scope="module")
async def guarded(settings: Settings, serve_app: ServeApp) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus one staff-only route, as the dashboard routes will be mounted."""
    app = create_app(settings)
    app.register(staff_only)
    async with serve_app(app) as http:
        yield http


async def user_with_token(http: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    name = f"g{secrets.token_hex(5)}"
    signup = await http.post("/api/v1/auth/signup", json={"username": name, "password": PASSWORD})
    assert signup.status_code == 201, signup.text
    login = await http.post("/api/v1/auth/login", data={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return signup.json()["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_guard_requires_a_token(guarded: httpx.AsyncClient) -> None:
    response = await guarded.get(STAFF)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}


async def test_guard_refuses_plain_users(guarded: httpx.AsyncClient) -> None:
    _, auth = await user_with_token(guarded)
    response = await guarded.get(STAFF, headers=auth)
    assert response.status_code == 403
    assert response.json() == {"detail": "You don't have permission to access this resource."}


@pytest.mark.parametrize("role", ["moderator", "admin"])
async def test_guard_admits_staff_by_their_stored_role(
    guarded: httpx.AsyncClient, db: asyncpg.Pool, role: str
) -> None:
    user_id, auth = await user_with_token(guarded)  # the token still says "user"
    await db.execute("UPDATE users SET role = $1 WHERE id = $2", role, user_id)
    response = await guarded.get(STAFF, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["role"] == role


async def test_guard_follows_a_demotion_at_once(
    guarded: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    user_id, _ = await user_with_token(guarded)
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", user_id)
    name = await db.fetchval("SELECT username FROM users WHERE id = $1", user_id)
    login = await guarded.post("/api/v1/auth/login", data={"username": name, "password": PASSWORD})
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}  # says "admin"
    assert (await guarded.get(STAFF, headers=auth)).status_code == 200
    await db.execute("UPDATE users SET role = 'user' WHERE id = $1", user_id)
    assert (await guarded.get(STAFF, headers=auth)).status_code == 403


async def test_guard_treats_a_deleted_account_as_unauthenticated(
    guarded: httpx.AsyncClient, db: asyncpg.Pool
) -> None:
    user_id, auth = await user_with_token(guarded)
    await db.execute("DELETE FROM users WHERE id = $1", user_id)
    response = await guarded.get(STAFF, headers=auth)
    assert response.status_code == 401
    assert response.json() == {"detail": "Could not validate credentials"}
    assert response.headers["www-authenticate"] == "Bearer"
