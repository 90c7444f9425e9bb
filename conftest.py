"""Servers for every test suite: the configured Redis and PostgreSQL, else private ones.

``REDIS_URL`` and ``DATABASE_URL`` name the servers (CI sets them to this machine's); when unset,
private servers are started for the session from whatever ``justchat.devservers`` finds. Each
session then isolates itself: a fresh database on the server and a unique Redis key prefix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio

# Imported before pytest collects gateway/tests: under --import-mode=importlib pytest would
# otherwise register the folder gateway/ as a namespace package that hides the real one.
import gateway  # noqa: F401
from justchat import devservers, settings


def _server_url(url: str) -> str:
    """The same server, database ``postgres``: where databases are created and dropped."""
    return url.rsplit("/", 1)[0] + "/postgres"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with devservers.start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield _server_url(os.environ["DATABASE_URL"])
        return
    with devservers.start_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server.url


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for this test session, dropped afterwards."""
    name = f"justchat_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(postgres_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this session's own; its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    return settings.generate_secret()


@pytest.fixture(scope="session")
def app_settings(
    redis_url: str, database_url: str, redis_prefix: str, jwt_secret: str
) -> settings.Settings:
    return settings.from_env(
        {},
        redis_url=redis_url,
        database_url=database_url,
        redis_prefix=redis_prefix,
        jwt_secret=jwt_secret,
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
