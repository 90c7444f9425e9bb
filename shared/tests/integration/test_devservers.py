"""Private Redis/PostgreSQL servers start from each binary source, serve, and go away cleanly.

The "system" cases deliberately fail (not skip) when the system binaries are missing: CI must
notice a runner that silently lost them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from justchat.devservers import (
    DevServerError,
    InUse,
    PrivateServer,
    find_free_port,
    start_postgres,
    start_redis,
)

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


class Owner:
    """``python -m justchat.devservers``: another process that starts a server and owns it."""

    def __init__(self, name: str, data_dir: Path, port: int, log_path: Path) -> None:
        self.log_path = log_path
        command = [sys.executable, "-m", "justchat.devservers", name, str(data_dir)]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_serving(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while b"serving" not in self.log_path.read_bytes():
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # it stops its server on the way out
        self.process.wait(60)


def server_pid(name: str, data_dir: Path) -> int:
    pidfile = data_dir / "redis.pid" if name == "redis" else data_dir / "pgdata" / "postmaster.pid"
    return int(pidfile.read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def assert_serves(name: str, url: str) -> None:
    if name == "redis":
        await redis_roundtrip(url)
        return
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()


def url_of(name: str, port: int) -> str:
    if name == "redis":
        return f"redis://127.0.0.1:{port}/0"
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@pytest.mark.parametrize("name", ["redis", "postgres"])
async def test_a_server_whose_owner_died_is_replaced(
    name: str, data_dir: Path, servers: list[PrivateServer], tmp_path: Path
) -> None:
    port = find_free_port()
    owner = Owner(name, data_dir, port, tmp_path / "owner.log")
    stale = 0
    try:
        owner.wait_serving()
        stale = server_pid(name, data_dir)
        owner.process.kill()  # the owner dies; its server, in a session of its own, lives on
        owner.process.wait()
        assert alive(stale)

        fresh = STARTERS[name](data_dir, port=port)  # same port: the stale one must be gone
        servers.append(fresh)
        assert fresh.pid != stale
        assert not alive(stale)
        await assert_serves(name, fresh.url)
    finally:
        owner.stop()
        if stale and alive(stale):
            os.killpg(stale, signal.SIGKILL)  # a failed test leaves no orphan


@pytest.mark.parametrize("name", ["redis", "postgres"])
async def test_a_server_whose_owner_lives_is_never_touched(
    name: str, data_dir: Path, tmp_path: Path
) -> None:
    port = find_free_port()
    owner = Owner(name, data_dir, port, tmp_path / "owner.log")
    try:
        owner.wait_serving()
        running = server_pid(name, data_dir)
        with pytest.raises(InUse) as refused:
            STARTERS[name](data_dir)
        assert refused.value.pid == owner.process.pid
        assert f"pid {owner.process.pid}" in str(refused.value)
        assert alive(running)
        assert server_pid(name, data_dir) == running
        await assert_serves(name, url_of(name, port))
    finally:
        owner.stop()


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_a_stopped_server_frees_its_directory(
    name: str, data_dir: Path, servers: list[PrivateServer]
) -> None:
    first = STARTERS[name](data_dir)
    servers.append(first)
    with pytest.raises(InUse):  # our own live server: refused as any other owner's
        STARTERS[name](data_dir)
    first.stop()
    second = STARTERS[name](data_dir)
    servers.append(second)
    assert second.pid is not None and second.pid != first.pid


def test_missing_system_binary_is_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(data_dir))
    with pytest.raises(DevServerError, match="no redis"):
        start_redis(data_dir, source="system")
