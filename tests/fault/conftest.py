"""Fault tests run their own stacks on private Redis and PostgreSQL servers that they may kill.

The servers live for the module, on ports chosen once, so that a test can stop one and start it
again on the same port (the services keep their configured URLs and must find it again by
themselves). Each test gets a fresh ``Stack`` with its own Redis key prefix, stopped afterwards
even when the test fails; a test that left a server down gets it started again by the next one.
The machine's own Redis (6379) and PostgreSQL (5432) are never touched.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from justchat import devservers
from justchat.devservers import PrivateServer, find_free_port, find_free_port_run
from justchat.settings import generate_secret
from justchat.stack import Stack, StackConfig

# Short TTLs (as tests/conftest.py's STACK_ENV) so that expiries and take-overs take seconds.
FAULT_ENV = {
    "JUSTCHAT_PRESENCE_TTL_S": "3",
    "JUSTCHAT_HEARTBEAT_S": "0.5",
    "JUSTCHAT_LEASE_TTL_MS": "2000",
    "JUSTCHAT_HANDSHAKE_TIMEOUT_S": "2",
    "JUSTCHAT_MEMBERS_INTERVAL_MS": "0",
    # These tests send bursts to load the faults; the rate limit has tests of its own.
    "JUSTCHAT_SEND_RATE_PER_S": "10000",
    "JUSTCHAT_SEND_BURST": "10000",
}
DATABASE = "justchat_fault"


class Servers:
    """One private Redis and one private PostgreSQL, restartable on their fixed ports."""

    def __init__(self, root: Path) -> None:
        self.redis_dir, self.postgres_dir = root / "redis", root / "postgres"
        self.redis_port, self.postgres_port = find_free_port(), find_free_port()
        self.redis: PrivateServer | None = None
        self.postgres: PrivateServer | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{DATABASE}"

    async def start_redis(self) -> None:
        self.redis = await asyncio.to_thread(
            devservers.start_redis, self.redis_dir, port=self.redis_port
        )

    async def stop_redis(self) -> None:
        server, self.redis = self.redis, None
        if server is not None:
            await asyncio.to_thread(server.stop)

    async def start_postgres(self) -> None:
        self.postgres = await asyncio.to_thread(
            devservers.start_postgres, self.postgres_dir, port=self.postgres_port
        )

    async def stop_postgres(self) -> None:
        server, self.postgres = self.postgres, None
        if server is not None:
            await asyncio.to_thread(server.stop)

    async def ensure_running(self) -> None:
        """Start whichever server a previous (failed) test left stopped."""
        if self.redis is None or not _alive(self.redis):
            await self.stop_redis()
            await self.start_redis()
        if self.postgres is None or not _alive(self.postgres):
            await self.stop_postgres()
            await self.start_postgres()

    async def stop(self) -> None:
        await self.stop_redis()
        await self.stop_postgres()


def _alive(server: PrivateServer) -> bool:
    return server.pid is not None and _pid_alive(server.pid)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="module")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Servers]:
    running = Servers(tmp_path_factory.mktemp("fault-servers"))
    try:
        await running.start_redis()
        await running.start_postgres()
        admin = await asyncpg.connect(
            f"postgresql://postgres@127.0.0.1:{running.postgres_port}/postgres", timeout=10
        )
        try:
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await admin.close()
        yield running
    finally:
        await running.stop()


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(
    servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StackFactory]:
    """``await make_stack(**extra_env)``: a started stack on the private servers, stopped after."""
    started: list[Stack] = []

    async def make(**extra_env: str) -> Stack:
        await servers.ensure_running()
        gateways = 2
        stack = Stack(
            StackConfig(
                gateways=gateways,
                api_port=find_free_port(),
                gateway_port=find_free_port_run(gateways),
                chat_port=find_free_port(),
                presence_port=find_free_port(),
                run_dir=tmp_path_factory.mktemp("fault-stack"),
                redis_url=servers.redis_url,
                database_url=servers.database_url,
                env={
                    **FAULT_ENV,
                    "JUSTCHAT_REDIS_PREFIX": f"f{uuid.uuid4().hex[:10]}:",
                    "JUSTCHAT_JWT_SECRET": generate_secret(),
                    **extra_env,
                },
            )
        )
        started.append(stack)
        await stack.start()
        return stack

    try:
        yield make
    finally:
        for stack in started:
            await stack.stop()


@pytest.fixture
def channel_id() -> int:
    """A channel no other test uses."""
    return secrets.randbelow(2**31 - 1) + 1


Signup = Callable[[Stack], Awaitable[tuple[str, str]]]


@pytest.fixture
def signup() -> Signup:
    """``await signup(stack)``: a new account through the REST API, as (username, token).

    The fault tests use accounts, not guests: a guest gets a new name on every connection, and
    client_msg_id deduplication is per (user, channel), so a re-send after a reconnect must come
    from the same user.
    """

    async def create(stack: Stack) -> tuple[str, str]:
        username = f"f{secrets.token_hex(5)}"
        password = "Secret-pass1"
        async with httpx.AsyncClient(base_url=f"{stack.api_url}/api/v1", timeout=20) as api:
            created = await api.post(
                "/auth/signup", json={"username": username, "password": password}
            )
            assert created.status_code == 201, created.text
            login = await api.post("/auth/login", data={"username": username, "password": password})
            assert login.status_code == 200, login.text
        return username, str(login.json()["access_token"])

    return create
