"""The whole system for end-to-end tests: one ``Stack`` per session, two gateways, free ports."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from justchat.client import Client
from justchat.devservers import find_free_port_run
from justchat.stack import Stack, StackConfig

# Short TTLs so that the tests of expiry run in seconds (member lists keep their default pacing,
# whose order tests/protocol checks); the defaults are in settings.py.
STACK_ENV = {
    "JUSTCHAT_PRESENCE_TTL_S": "3",
    "JUSTCHAT_HEARTBEAT_S": "0.5",
    "JUSTCHAT_LEASE_TTL_MS": "2000",
    "JUSTCHAT_HANDSHAKE_TIMEOUT_S": "2",
    # Tests send in bursts; the rate limit has its own tests with these figures.
    "JUSTCHAT_SEND_RATE_PER_S": "100",
    "JUSTCHAT_SEND_BURST": "200",
}


def stack_config(
    run_dir: Path,
    *,
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
    gateways: int = 2,
    chat_replicas: int = 1,
    presence_replicas: int = 1,
    env: dict[str, str] | None = None,
) -> StackConfig:
    """A stack on free ports with the test TTLs (``env`` overrides them)."""
    # One run of consecutive free ports for every service, so no two can pick the same one.
    base = find_free_port_run(1 + gateways + chat_replicas + presence_replicas)
    return StackConfig(
        gateways=gateways,
        api_port=base,
        gateway_port=base + 1,
        chat_port=base + 1 + gateways,
        chat_replicas=chat_replicas,
        presence_port=base + 1 + gateways + chat_replicas,
        presence_replicas=presence_replicas,
        run_dir=run_dir,
        redis_url=redis_url,
        database_url=database_url,
        env={
            **STACK_ENV,
            "JUSTCHAT_REDIS_PREFIX": redis_prefix,
            "JUSTCHAT_JWT_SECRET": jwt_secret,
            **(env or {}),
        },
    )


@pytest.fixture(scope="session")
def make_stack_config() -> Callable[..., StackConfig]:
    """``stack_config`` for test modules that need a stack of their own."""
    return stack_config


@pytest.fixture(scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[Stack]:
    async with Stack(
        stack_config(
            tmp_path_factory.mktemp("stack"),
            redis_url=redis_url,
            database_url=database_url,
            redis_prefix=redis_prefix,
            jwt_secret=jwt_secret,
        )
    ) as running:
        yield running


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{stack.api_url}/api/v1", timeout=10) as client:
        yield client


class Connector:
    """Opens clients on the stack's gateways (round robin unless told) and closes them after."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.opened: list[Client] = []

    async def __call__(self, gateway: int | None = None, *, token: str | None = None) -> Client:
        urls = self.stack.gateway_urls
        url = urls[len(self.opened) % len(urls) if gateway is None else gateway]
        client = await Client.connect(url, token=token)
        self.opened.append(client)
        return client

    async def close(self) -> None:
        for client in self.opened:
            await client.close()


@pytest.fixture
async def connect(stack: Stack) -> AsyncIterator[Connector]:
    connector = Connector(stack)
    yield connector
    await connector.close()


@pytest.fixture
def channel_id() -> int:
    """A channel no other test uses."""
    return secrets.randbelow(2**31 - 1) + 1


@pytest.fixture
async def registered(api: httpx.AsyncClient) -> dict[str, str]:
    """A freshly signed-up account and a login token for it, through the REST API."""
    username = f"user{secrets.token_hex(4)}"
    password = "Secret-pass1"
    created = await api.post("/auth/signup", json={"username": username, "password": password})
    assert created.status_code == 201, created.text
    login = await api.post("/auth/login", data={"username": username, "password": password})
    assert login.status_code == 200, login.text
    return {
        "username": username,
        "password": password,
        "token": login.json()["access_token"],
        "id": str(created.json()["id"]),
    }
