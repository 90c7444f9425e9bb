"""Private Redis/PostgreSQL servers start from each binary source, serve, and go away cleanly.

The "system" cases deliberately fail (not skip) when the system binaries are missing: CI must
notice a runner that silently lost them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from justchat.devservers import DevServerError, PrivateServer, start_postgres, start_redis

pytestmark = pytest.mark.slow

Source = Literal["system", "package"]
SOURCES: list[Source] = ["system", "package"]
STARTERS: dict[str, Callable[..., PrivateServer]] = {
    "redis": start_redis,
    "postgres": start_postgres,
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "srv"
    yield path
    # As root, pgdata is kept outside pytest's 0700 tmp tree, behind a symlink.
    link = path / "pgdata"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)


@pytest.fixture
def servers(data_dir: Path) -> Iterator[list[PrivateServer]]:
    """Servers to stop even if the test fails half-way (depends on data_dir: stops first)."""
    started: list[PrivateServer] = []
    yield started
    for server in started:
        server.stop()


def port_of(server: PrivateServer) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def assert_gone(pid: int, port: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the leader and every child in its group
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


async def redis_roundtrip(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        assert await client.ping()
        await client.set("k", "v")
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()


@pytest.mark.parametrize("source", SOURCES)
async def test_redis_serves_and_stops(
    source: Source, data_dir: Path, servers: list[PrivateServer]
) -> None:
    server = start_redis(data_dir, source=source)
    servers.append(server)
    assert (server.name, server.source) == ("redis", source)
    assert server.url.startswith("redis://127.0.0.1:")
    pid = server.pid
    assert pid is not None
    await redis_roundtrip(server.url)

    server.stop()
    assert server.pid is None
    assert_gone(pid, port_of(server))


@pytest.mark.parametrize("source", SOURCES)
async def test_postgres_serves_and_stops(
    source: Source, data_dir: Path, servers: list[PrivateServer]
) -> None:
    server = start_postgres(data_dir, source=source)
    servers.append(server)
    assert (server.name, server.source) == ("postgres", source)
    assert server.url == f"postgresql://postgres@127.0.0.1:{port_of(server)}/postgres"
    pid = server.pid
    assert pid is not None
    conn = await asyncpg.connect(server.url)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_user") == "postgres"
        await conn.execute("create table t (id int primary key)")
    finally:
        await conn.close()

    server.stop()
    assert_gone(pid, port_of(server))


@pytest.mark.parametrize("source", SOURCES)
async def test_postgres_reuses_cluster(
    source: Source, data_dir: Path, servers: list[PrivateServer]
) -> None:
    first = start_postgres(data_dir, source=source)
    servers.append(first)
    conn = await asyncpg.connect(first.url)
    try:
        await conn.execute("create table kept (msg text); insert into kept values ('hello')")
    finally:
        await conn.close()
    first.stop()

    second = start_postgres(data_dir, source=source)
    servers.append(second)
    conn = await asyncpg.connect(second.url)
    try:
        assert await conn.fetchval("select msg from kept") == "hello"
    finally:
        await conn.close()


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_stop_is_idempotent(name: str, data_dir: Path, servers: list[PrivateServer]) -> None:
    server = STARTERS[name](data_dir)
    servers.append(server)
    pid = server.pid
    assert pid is not None
    server.stop()
    server.stop()
    assert server.pid is None
    assert_gone(pid, port_of(server))


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_stop_kills_the_group_when_graceful_shutdown_hangs(
    name: str, data_dir: Path, servers: list[PrivateServer]
) -> None:
    server = STARTERS[name](data_dir)
    servers.append(server)
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the leader ignores the polite signal; postgres children don't
    server.stop_timeout_s = 0.5
    server.stop()
    assert_gone(pid, port_of(server))


@pytest.mark.parametrize("name", ["redis", "postgres"])
async def test_stale_server_is_replaced(
    name: str, data_dir: Path, servers: list[PrivateServer]
) -> None:
    # The owner "crashed": its server is still running when the next run starts on the same dir.
    stale = STARTERS[name](data_dir)
    servers.append(stale)
    fresh = STARTERS[name](data_dir, port=port_of(stale))  # same port: the stale one must be gone
    servers.append(fresh)
    assert fresh.pid != stale.pid
    stale.stop()  # reaps our (already dead) child; must not touch the fresh server
    if name == "redis":
        await redis_roundtrip(fresh.url)
    else:
        conn = await asyncpg.connect(fresh.url)
        try:
            assert await conn.fetchval("select 1") == 1
        finally:
            await conn.close()


def test_missing_system_binary_is_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(data_dir))
    with pytest.raises(DevServerError, match="no redis"):
        start_redis(data_dir, source="system")
