"""The ``users`` table: accounts and guests, for auth and the dashboard."""

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
# Case-insensitive, then by code point so that "Bob" and "bob" always come in one order.
_BY_NAME: Final = 'lower(username) COLLATE "C", username COLLATE "C", id'
_LIKE_SPECIALS: Final = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


def like_pattern(text: str) -> str:
    """A LIKE pattern for ``text`` anywhere; its ``%``, ``_`` and ``\\`` are taken literally."""
    return f"%{text.translate(_LIKE_SPECIALS)}%"


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

    async def create_if_absent(
        self, username: str, password_hash: str, *, role: str = "user"
    ) -> UserRecord | None:
        """Insert an account unless the username is in use; None then, the row left untouched.

        ``ON CONFLICT DO NOTHING`` decides, so replicas starting together insert it once and
        none of them fails.
        """
        row = await self.pool.fetchrow(
            f"INSERT INTO users (username, password_hash, is_guest, role)"
            f" VALUES ($1, $2, false, $3) ON CONFLICT (username) DO NOTHING RETURNING {_COLUMNS}",
            username,
            password_hash,
            role,
        )
        return None if row is None else _record(row)

    async def by_username(self, username: str) -> UserRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE username = $1", username
        )
        return None if row is None else _record(row)

    async def by_id(self, user_id: int) -> UserRecord | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
        return None if row is None else _record(row)

    async def page(
        self, *, search: str, registered_only: bool, limit: int, offset: int
    ) -> tuple[int, list[UserRecord]]:
        """(how many users match, the ``limit`` of them after ``offset``) sorted by name.

        ``search`` matches anywhere in the name, ignoring case; an empty one matches everyone.
        """
        # Only fixed SQL text is assembled here; every value is a parameter.
        where = "lower(username) LIKE lower($1) ESCAPE '\\'"
        if registered_only:
            where += " AND NOT is_guest"
        pattern = like_pattern(search)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            # One snapshot: the count and the page agree even while users come and go.
            total: int = await conn.fetchval(f"SELECT count(*) FROM users WHERE {where}", pattern)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM users WHERE {where} ORDER BY {_BY_NAME}"
                " LIMIT $2 OFFSET $3",
                pattern,
                limit,
                offset,
            )
        return total, [_record(row) for row in rows]

    async def update(
        self,
        user_id: int,
        *,
        username: str | None = None,
        password_hash: str | None = None,
        role: str | None = None,
    ) -> UserRecord | None:
        """Change the given columns (None keeps one); None if the user does not exist.

        ``UsernameTaken`` if the new name belongs to someone else.
        """
        try:
            row = await self.pool.fetchrow(
                f"UPDATE users SET username = coalesce($2, username),"
                f" password_hash = coalesce($3, password_hash), role = coalesce($4, role)"
                f" WHERE id = $1 RETURNING {_COLUMNS}",
                user_id,
                username,
                password_hash,
                role,
            )
        except asyncpg.UniqueViolationError as exc:
            raise UsernameTaken(username or "") from exc
        return None if row is None else _record(row)

    async def delete(self, user_id: int) -> bool:
        """Delete a user; False if there was none. Their messages stay (sender_id set null)."""
        status: str = await self.pool.execute("DELETE FROM users WHERE id = $1", user_id)
        return status == "DELETE 1"

    async def ids_by_username(self, usernames: list[str]) -> dict[str, int]:
        """username -> id for those of ``usernames`` that exist."""
        rows = await self.pool.fetch(
            "SELECT id, username FROM users WHERE username = ANY($1::text[])", usernames
        )
        return {row["username"]: row["id"] for row in rows}
