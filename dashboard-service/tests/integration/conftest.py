"""The dashboard app, in process, on the session's real PostgreSQL and Redis (root conftest).

Routes that hand commands to chat-service (moderation) are tested with the real chat-service
running in process too (``chat_service``): its app, lifespan and stream consumer, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar import Litestar

from chat_service import create_app as create_chat_app
from dashboard_service import create_app
from justchat.auth import create_token
from justchat.keys import Keys
from justchat.service import redis_client
from justchat.settings import Settings, from_env

JWT_SECRET = "x" * 40


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    return from_env(
        {},
        jwt_secret=JWT_SECRET,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
    )


@pytest.fixture(scope="session")
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan the way uvicorn does: startup, serve, shutdown.

    The protocol runs in a task of its own, so that setup and teardown of a session fixture may
    happen in different tasks (they do under pytest-asyncio) without tripping anyio's cancel
    scopes, which must be left by the task that entered them.
    """
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))

    async def step(event: str) -> None:
        await to_app.put({"type": f"lifespan.{event}"})
        reply = await asyncio.wait_for(from_app.get(), timeout=30)
        if reply["type"] != f"lifespan.{event}.complete":
            with contextlib.suppress(Exception):
                await task
            raise RuntimeError(f"lifespan {event} failed: {reply.get('message')}")

    await step("startup")
    try:
        yield
    finally:
        await step("shutdown")
        await asyncio.wait_for(task, timeout=30)


@contextlib.asynccontextmanager
async def _serve_app(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    # Litestar types its ASGI callable more narrowly than httpx expects; it is a plain ASGI app.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as client,
    ):
        yield client


def _serve(settings: Settings) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
    return _serve_app(create_app(settings))


ServeApp = Callable[[Litestar], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]
Serve = Callable[[Settings], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def serve_app() -> ServeApp:
    """``async with serve_app(app) as client``: ``app`` in-process with its lifespan running."""
    return _serve_app


@pytest.fixture(scope="session")
def serve() -> Serve:
    """``async with serve(settings) as client``: a second app, configured differently."""
    return _serve


RunChatService = Callable[[Settings], contextlib.AbstractAsyncContextManager[None]]


@pytest.fixture(scope="session")
def chat_service() -> RunChatService:
    """``async with chat_service(settings)``: the real chat-service runs in process meanwhile.

    It consumes every command partition of ``settings.redis_prefix``: give it a prefix of its
    own (``own_prefix``) so that no other test's commands are applied behind its back.
    """
    return lambda settings: lifespan(create_chat_app(settings))


def own_prefix(settings: Settings, tag: str) -> Settings:
    """``settings`` with a Redis prefix nested under the session's (cleaned up with it)."""
    return msgspec.structs.replace(settings, redis_prefix=f"{settings.redis_prefix}{tag}:")


@pytest.fixture(scope="session")
def with_own_prefix() -> Callable[[Settings, str], Settings]:
    """``with_own_prefix(settings, tag)``: see ``own_prefix``."""
    return own_prefix


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with _serve(settings) as http:
        yield http


@pytest.fixture(scope="session")
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def db(database_url: str, client: httpx.AsyncClient) -> AsyncIterator[asyncpg.Pool]:
    """Direct SQL for arranging rows the API cannot create (guests, deletions).

    Depends on ``client`` so that the app's lifespan has migrated the schema first.
    """
    pool: asyncpg.Pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


@dataclass(frozen=True)
class Caller:
    """A user row made for a test, with a bearer token for it."""

    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]


@pytest.fixture(scope="session")
def make_user(db: asyncpg.Pool, settings: Settings) -> MakeUser:
    """``await make_user(role, username=..., is_guest=...)``: a row written with SQL, and a token.

    Roles are set in the database directly, the way an operator makes the first admin; the
    token is minted like ``/auth/login`` does (guests never get one that way, but a token for a
    guest's id is how a guest would present itself).
    """

    async def make(
        role: str = "user", *, username: str | None = None, is_guest: bool = False
    ) -> Caller:
        if username is None:
            username = (
                f"Guest{secrets.randbelow(10**12)}" if is_guest else f"u{secrets.token_hex(5)}"
            )
        role = "guest" if is_guest else role
        user_id = await db.fetchval(
            "INSERT INTO users (username, password_hash, is_guest, role)"
            " VALUES ($1, NULL, $2, $3) RETURNING id",
            username,
            is_guest,
            role,
        )
        token = create_token(
            user_id=user_id, username=username, role=role, secret=settings.jwt_secret, ttl_s=900
        )
        return Caller(user_id, username, role, is_guest, {"Authorization": f"Bearer {token}"})

    return make


@pytest.fixture
async def admin(make_user: MakeUser) -> Caller:
    return await make_user("admin")


@pytest.fixture
async def moderator(make_user: MakeUser) -> Caller:
    return await make_user("moderator")


@pytest.fixture
def new_channel_id() -> Callable[[], int]:
    """Channel ids no other test uses (the channels table is shared by the session)."""
    return lambda: 1_000_000_000 + secrets.randbelow(1_000_000_000)


@pytest.fixture
def create_channel(
    db: asyncpg.Pool, new_channel_id: Callable[[], int]
) -> Callable[[], Awaitable[int]]:
    async def create() -> int:
        channel_id = new_channel_id()
        await db.execute("INSERT INTO channels (id) VALUES ($1)", channel_id)
        return channel_id

    return create


# -- shared assertion and lookup helpers (test modules take these as fixtures) -------------------

AssertError = Callable[..., str]


def _assert_error(
    response: httpx.Response, status: int, detail: str | None = None, *, nonempty: bool
) -> str:
    """The response is ``status`` with body exactly ``{"detail": <str>}``; return the detail."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail"], body
    assert isinstance(body["detail"], str)
    if nonempty:
        assert body["detail"]
    if detail is not None:
        assert body["detail"] == detail
    return str(body["detail"])


@pytest.fixture(scope="session")
def assert_error() -> AssertError:
    """``assert_error(response, status, detail=None)``: the error shape; returns the detail."""

    def check(response: httpx.Response, status: int, detail: str | None = None) -> str:
        return _assert_error(response, status, detail, nonempty=False)

    return check


@pytest.fixture(scope="session")
def assert_nonempty_error() -> AssertError:
    """Like ``assert_error``, and the detail must not be empty."""

    def check(response: httpx.Response, status: int, detail: str | None = None) -> str:
        return _assert_error(response, status, detail, nonempty=True)

    return check


RowOf = Callable[[asyncpg.Pool, int], Awaitable[dict[str, Any]]]
SameUser = Callable[[dict[str, Any], dict[str, Any]], None]


async def _row_of(db: asyncpg.Pool, user_id: int) -> dict[str, Any]:
    row = await db.fetchrow(
        "SELECT id, username, is_guest, role, created_at FROM users WHERE id = $1", user_id
    )
    assert row is not None
    return {
        "id": row["id"],
        "username": row["username"],
        "is_guest": row["is_guest"],
        "created_at": row["created_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "role": row["role"],
    }


def _same_user(body: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, comparing ``created_at`` as instants (the text may drop trailing zeros)."""
    assert set(body) == {"id", "username", "is_guest", "created_at", "role"}
    assert body["created_at"].endswith("Z")
    assert datetime.fromisoformat(body["created_at"]) == datetime.fromisoformat(
        expected["created_at"]
    )
    assert {k: v for k, v in body.items() if k != "created_at"} == {
        k: v for k, v in expected.items() if k != "created_at"
    }


@pytest.fixture(scope="session")
def row_of() -> RowOf:
    """``await row_of(db, user_id)``: the user's row as the API's public user JSON."""
    return _row_of


@pytest.fixture(scope="session")
def same_user() -> SameUser:
    """``same_user(body, expected)``: public users equal, ``created_at`` compared as instants."""
    return _same_user
