"""PostgreSQL connection pools and the schema migrations (ordered SQL files in ``migrations/``)."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any, Final

import asyncpg

log = logging.getLogger(__name__)

# Any fixed 64-bit number: every process that migrates takes this advisory lock first, so that
# replicas starting together apply each migration exactly once.
MIGRATION_LOCK: Final = 0x6A75_7374_6368_6174 & 0x7FFF_FFFF_FFFF_FFFF


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration, in order."""
    found = []
    for entry in resources.files("justchat.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations under an advisory lock; return the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def create_pool(url: str, *, migrate_schema: bool = True, **kwargs: Any) -> asyncpg.Pool:
    """A pool for ``url``; with ``migrate_schema`` the schema is brought up to date first."""
    if migrate_schema:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    kwargs.setdefault("min_size", 1)
    kwargs.setdefault("max_size", 10)
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("command_timeout", 30)
    pool: asyncpg.Pool = await asyncpg.create_pool(url, **kwargs)
    return pool
