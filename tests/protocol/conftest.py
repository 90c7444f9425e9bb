"""The protocol conformance suite: PROTOCOL.md rule by rule against the running stack.

Every stack here runs at the settings users get: no timing shortened, no limit raised (the
session stack of the other suites shortens TTLs and disables member-list coalescing; this suite
replaces it). A module needing a setting of its own passes it explicitly in ``env``.

Test modules get their helpers through the ``proto`` fixture (a ``Proto``): raw sockets for the
rules about bytes on the wire, typed ``Client``s for the rest, accounts of any role, and the
small waiting helpers (``joined``, ``collect``, ``quiet``) every module needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from justchat import wire
from justchat.client import Client
from justchat.stack import Stack, StackConfig

# What a stack cannot run without; everything else is left to the defaults.
REQUIRED_ENV: Final = ("JUSTCHAT_REDIS_PREFIX", "JUSTCHAT_JWT_SECRET")

QUIET_S: Final = 0.5
PASSWORD: Final = "Secret-pass1"
STAFF_TOKEN_REUSE_S: Final = 300.0  # well inside the tokens' 15 minutes


async def recv_json(ws: ClientConnection, timeout_s: float = 10.0) -> dict[str, Any]:
    """The next frame as JSON; it must be a text frame holding one JSON object."""
    data = await asyncio.wait_for(ws.recv(), timeout_s)
    assert isinstance(data, str), f"binary frame from the server: {data!r}"
    frame = json.loads(data)
    assert isinstance(frame, dict), frame
    return frame


async def closed_with(ws: ClientConnection, timeout_s: float = 10.0) -> tuple[int, str, list[Any]]:
    """Read until the server closes; returns its close code, reason and the frames before."""
    frames: list[Any] = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                frames.append(await ws.recv())
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or "", frames


def new_channel() -> int:
    """A channel id no other test uses."""
    return secrets.randbelow(2**31 - 2) + 1


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def hang_up(connection: Client | ClientConnection) -> None:
    """Close, reading whatever is still queued meanwhile: a client that stopped reading holds
    back the server's close frame and would wait out the whole close timeout (10 s)."""
    ws = connection.ws if isinstance(connection, Client) else connection

    async def consume() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    reader = asyncio.create_task(consume())
    try:
        await ws.close()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


@dataclass(frozen=True, kw_only=True)
class Account:
    id: int
    username: str
    password: str
    token: str
    role: str


_STAFF: dict[tuple[str, str], tuple[float, Account]] = {}


class Proto:
    """Everything a protocol test needs, bound to the session's stack."""

    def __init__(
        self, stack: Stack, connect: Any, api: httpx.AsyncClient, database_url: str
    ) -> None:
        self.stack, self.connect, self.api, self.database_url = stack, connect, api, database_url
        self._raw: list[ClientConnection] = []

    # -- connections -----------------------------------------------------------------------

    async def raw(self, gateway: int = 0, **kwargs: Any) -> ClientConnection:
        """A bare WebSocket on a gateway, before any hello (closed after the test)."""
        ws = await websockets.connect(self.stack.gateway_urls[gateway], **kwargs)
        self._raw.append(ws)
        return ws

    async def hello(
        self, gateway: int = 0, *, token: str | None = None, **kwargs: Any
    ) -> tuple[ClientConnection, dict[str, Any]]:
        """A bare WebSocket past a successful hello; returns it and the hello reply as JSON."""
        ws = await self.raw(gateway, **kwargs)
        await ws.send(
            json.dumps({"type": "hello", "payload": {} if token is None else {"token": token}})
        )
        reply = await recv_json(ws)
        assert reply["type"] == "hello", reply
        return ws, reply

    async def close(self) -> None:
        """Close every connection the test opened, all at once."""
        opened = [*self._raw, *self.connect.opened]
        await asyncio.gather(*(hang_up(c) for c in opened), return_exceptions=True)

    # Plain helpers, reachable from test modules (which cannot import a conftest).
    recv_json = staticmethod(recv_json)
    closed_with = staticmethod(closed_with)
    hang_up = staticmethod(hang_up)
    new_channel = staticmethod(new_channel)
    is_uuid = staticmethod(is_uuid)

    # -- accounts ----------------------------------------------------------------------------

    async def account(self, role: str = "user") -> Account:
        """A new account with ``role`` (set in the database), logged in after the promotion."""
        username = f"p{secrets.token_hex(5)}"
        created = await self.api.post(
            "/auth/signup", json={"username": username, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        if role != "user":
            db = await asyncpg.connect(self.database_url)
            try:
                await db.execute("UPDATE users SET role = $1 WHERE id = $2", role, user_id)
            finally:
                await db.close()
        login = await self.api.post(
            "/auth/login", data={"username": username, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        return Account(
            id=user_id,
            username=username,
            password=PASSWORD,
            token=login.json()["access_token"],
            role=role,
        )

    async def staff(self, role: str = "moderator") -> Account:
        """An admin or moderator shared by the session's tests (mutes, bans and rates are per
        user and channel, and every test has channels of its own), re-logged in when old."""
        key = (self.database_url, role)
        cached = _STAFF.get(key)
        if cached is None or time.monotonic() - cached[0] > STAFF_TOKEN_REUSE_S:
            cached = _STAFF[key] = (time.monotonic(), await self.account(role))
        return cached[1]

    async def sql(self, query: str, *args: Any) -> Any:
        db = await asyncpg.connect(self.database_url)
        try:
            return await db.fetch(query, *args)
        finally:
            await db.close()

    # -- waiting -----------------------------------------------------------------------------

    @staticmethod
    async def joined(client: Client, channel_id: int, **kwargs: Any) -> list[Any]:
        """Join; return every frame up to and including the client's own ``channel_join``."""
        await client.join(channel_id, **kwargs)
        frames: list[Any] = []
        while True:
            frame = await client.recv()
            frames.append(frame)
            if isinstance(frame, wire.ErrorFrame):
                raise AssertionError(f"join of {channel_id} failed: {frame}")
            if (
                isinstance(frame, wire.JoinFrame)
                and frame.payload.channel_id == channel_id
                and frame.payload.user == client.user
            ):
                return frames

    @staticmethod
    async def collect(client: Client, seconds: float = QUIET_S) -> list[Any]:
        """Every frame that arrives within ``seconds``."""
        frames: list[Any] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames.append(await client.recv(left))
            except TimeoutError:
                break
        return frames

    @classmethod
    async def quiet(cls, *clients: Client, seconds: float = QUIET_S) -> None:
        """Nothing arrives for any of ``clients`` within ``seconds``."""
        got = await asyncio.gather(*(cls.collect(c, seconds) for c in clients))
        for client, frames in zip(clients, got, strict=True):
            assert frames == [], f"{client.user.username} got unexpected frames {frames}"

    @staticmethod
    async def error(client: Client, timeout_s: float = 10.0) -> str:
        """The next frame, which must be an error; returns its detail."""
        frame = await client.recv(timeout_s)
        assert isinstance(frame, wire.ErrorFrame), frame
        return frame.payload.detail

    @staticmethod
    async def echo(client: Client, channel_id: int, content: str, **kwargs: Any) -> Any:
        """Send and wait for the sender's own copy of the broadcast (an error fails at once)."""
        await client.send(channel_id, content, **kwargs)
        while True:
            frame = await client.recv()
            if isinstance(frame, wire.ErrorFrame):
                raise AssertionError(f"sending {content[:40]!r} failed: {frame}")
            if (
                isinstance(frame, wire.ChatSendFrame)
                and frame.payload.channel_id == channel_id
                and frame.payload.content == content
            ):
                return frame

    async def fill(self, channel_id: int, count: int, *, per_sender: int = 15) -> list[Any]:
        """``count`` messages in ``channel_id`` from fresh guests (each under the send burst),
        one after another; returns the broadcasts in seq order. The senders join together, so
        their arrival costs one member-list window, not one each."""
        senders = [await self.connect() for _ in range(-(-count // per_sender))]
        await asyncio.gather(*(self.joined(sender, channel_id) for sender in senders))
        sent: list[Any] = []
        for sender in senders:
            for _ in range(min(per_sender, count - len(sent))):
                sent.append(await self.echo(sender, channel_id, f"m{len(sent) + 1}"))
        await asyncio.gather(*(hang_up(sender) for sender in senders))
        return sent


@pytest.fixture(scope="session")
def make_stack_config(
    make_stack_config: Callable[..., StackConfig],
) -> Callable[..., StackConfig]:
    """The root suite's stack configuration without its shortened or raised settings."""
    shared = make_stack_config

    def at_defaults(run_dir: Path, *, env: dict[str, str] | None = None, **kw: Any) -> StackConfig:
        config = shared(run_dir, env=env, **kw)
        keep = {*REQUIRED_ENV, *(env or {})}
        return dataclasses.replace(config, env={k: v for k, v in config.env.items() if k in keep})

    return at_defaults


@pytest.fixture(scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_config: Callable[..., StackConfig],
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[Stack]:
    """Two gateways and one of each service, at the default settings."""
    async with Stack(
        make_stack_config(
            tmp_path_factory.mktemp("protocol-stack"),
            redis_url=redis_url,
            database_url=database_url,
            redis_prefix=redis_prefix,
            jwt_secret=jwt_secret,
        )
    ) as running:
        yield running


@pytest.fixture
async def proto(
    stack: Stack, connect: Any, api: httpx.AsyncClient, database_url: str
) -> AsyncIterator[Proto]:
    helper = Proto(stack, connect, api, database_url)
    yield helper
    await helper.close()
