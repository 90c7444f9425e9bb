"""All of dashboard-service's SQL: the ``users`` table."""

from __future__ import annotations

from datetime import datetime
from typing import Final

import asyncpg
from msgspec import Struct

from justchat.errors import JustchatError


class UserRecord(Struct, frozen=True, kw_only=True):
    id: int
    username: str
    password_hash: str | None  # None for guests: they never log in with a password
    is_guest: bool
    role: str
    created_at: datetime


class UsernameTaken(JustchatError):
    """Another user already has this username (the unique constraint said so)."""


_COLUMNS: Final = "id, username, password_hash, is_guest, role, created_at"


def _record(row: asyncpg.Record) -> UserRecord:
    return UserRecord(
        id=row["id"],
        username=row["username"],
        password_hash=row["password_hash"],
        is_guest=row["is_guest"],
        role=row["role"],
        created_at=row["created_at"],
    )


class UserStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, username: str, password_hash: str, *, role: str = "user") -> UserRecord:
        """Insert an account; ``UsernameTaken`` if the name is in use.

        The unique constraint decides, not a prior SELECT: two concurrent signups for one name
        cannot both pass it.
        """
        try:
            row = await self.pool.fetchrow(
                f"INSERT INTO users (username, password_hash, is_guest, role)"
                f" VALUES ($1, $2, false, $3) RETURNING {_COLUMNS}",
                username,
                password_hash,
                role,
            )
        except asyncpg.UniqueViolationError as exc:
            raise UsernameTaken(username) from exc
        return _record(row)

    async def by_username(self, username: str) -> UserRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE username = $1", username
        )
        return None if row is None else _record(row)

    async def by_id(self, user_id: int) -> UserRecord | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
        return None if row is None else _record(row)
