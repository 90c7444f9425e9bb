"""What the generator loads: a stack it starts itself (server side pinned to one CPU, the
generator to another), or gateways and an API at given URLs."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from bench import procs
from justchat.devservers import find_free_port_run
from justchat.settings import generate_secret
from justchat.stack import Stack, StackConfig

log = logging.getLogger(__name__)

# Measure the system, not the per-user send limit (the rooms scenario's users stay far below
# the default anyway; fan-out senders do not).
LIFTED_RATE = {"JUSTCHAT_SEND_RATE_PER_S": "1000000", "JUSTCHAT_SEND_BURST": "1000000"}


@dataclass
class Target:
    gateway_urls: list[str]
    api_url: str
    database_url: str = ""  # known when the bench started the stack: lets it count stored rows
    watched: list[procs.Watched] = field(default_factory=list)
    stack: Stack | None = None
    server_cpus: set[int] = field(default_factory=set)
    generator_cpus: set[int] = field(default_factory=set)

    @property
    def gateways(self) -> list[procs.Watched]:
        return [w for w in self.watched if w.name.startswith("gateway")]

    @property
    def services(self) -> list[procs.Watched]:
        """The Python services (what py-spy can profile)."""
        return [w for w in self.watched if w.name not in ("redis", "postgres")]

    async def restart(self) -> None:
        """Fresh service processes (same Redis and PostgreSQL) between scenarios."""
        if self.stack is None:
            return
        with _affinity(self.server_cpus):
            await self.stack.restart()
        self.refresh()

    def refresh(self) -> None:
        """Find the processes again (after a restart) and pin them."""
        stack = self.stack
        if stack is None:
            return
        watched = [
            procs.Watched(s.name, s.process.pid) for s in stack.services if s.process is not None
        ]
        for server in stack.servers:
            if server.pid is not None:
                name = "postgres" if "postgres" in server.name else "redis"
                watched.append(procs.Watched(name, server.pid, tree=name == "postgres"))
        self.watched = watched
        if self.server_cpus:
            procs.pin([w.pid for w in watched], self.server_cpus)


def plan_cpus(pin: bool) -> tuple[set[int], set[int]]:
    """(server side, generator): one CPU each when there are two or more to choose from."""
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2:
        return set(), set()
    return {available[0]}, {available[1]}


@contextlib.contextmanager
def _affinity(cpus: set[int]) -> Iterator[None]:
    """Run the block on ``cpus`` (children spawned in it inherit them), then go back."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.asynccontextmanager
async def started_stack(gateways: int, pin: bool, env: dict[str, str]) -> AsyncIterator[Target]:
    """Private Redis and PostgreSQL unless REDIS_URL / DATABASE_URL are set; then a database
    and a key prefix of the bench's own on them, removed afterwards."""
    server_cpus, generator_cpus = plan_cpus(pin)
    redis_url = os.environ.get("REDIS_URL", "")
    shared_db = os.environ.get("DATABASE_URL", "")
    prefix = f"bench{os.getpid()}-{secrets.token_hex(3)}:"
    db_name = f"justchat_bench_{os.getpid()}_{secrets.token_hex(3)}"
    database_url = await _create_database(shared_db, db_name) if shared_db else ""
    with tempfile.TemporaryDirectory(prefix="justchat-bench-") as run_dir:
        base = find_free_port_run(gateways + 3)
        stack = Stack(
            StackConfig(
                gateways=gateways,
                api_port=base,
                gateway_port=base + 1,
                chat_port=base + 1 + gateways,
                presence_port=base + 2 + gateways,
                run_dir=Path(run_dir),
                redis_url=redis_url,
                database_url=database_url,
                env={
                    "JUSTCHAT_REDIS_PREFIX": prefix,
                    "JUSTCHAT_LOG_LEVEL": "WARNING",
                    "JUSTCHAT_JWT_SECRET": generate_secret(),
                    **LIFTED_RATE,
                    **env,
                },
            )
        )
        log.info(
            "starting the stack: %d gateways, server side on CPUs %s, generator on %s",
            gateways,
            sorted(server_cpus) or "any",
            sorted(generator_cpus) or "any",
        )
        try:
            with _affinity(server_cpus):
                await stack.start()
            if generator_cpus:
                os.sched_setaffinity(0, generator_cpus)
            target = Target(
                gateway_urls=stack.gateway_urls,
                api_url=stack.api_url,
                database_url=stack.database_url,
                stack=stack,
                server_cpus=server_cpus,
                generator_cpus=generator_cpus,
            )
            target.refresh()
            yield target
        finally:
            await stack.stop()
            if redis_url:
                await _delete_keys(redis_url, prefix)
            if shared_db:
                await _drop_database(shared_db, db_name)


async def _create_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


async def _drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _delete_keys(redis_url: str, prefix: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


async def stored_messages(database_url: str, channels: list[int]) -> int | None:
    """Rows chat-service stored for these channels (None when the database is not ours)."""
    if not database_url:
        return None
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE channel_id = ANY($1::int[])", channels
        )
    finally:
        await conn.close()
    return int(count)
