"""All of chat-service's SQL: messages, channels, guests."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from msgspec import Struct

from justchat.events import SendCmd


class StoredMessage(Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    channel_id: int
    seq: int
    sender_username: str
    sender_is_guest: bool
    content: str
    client_msg_id: str | None
    created_at: datetime
    replayed: bool = False  # it was already stored: this send repeated an earlier one


_COLUMNS = (
    "id, channel_id, seq, sender_username, sender_is_guest, content, client_msg_id, created_at"
)

# One round trip per message. A replayed command (same id) or a repeated client_msg_id finds
# the row already stored and returns it unchanged; otherwise the channel's row lock hands out the
# next seq, so concurrent writers can never give two messages one seq or leave a gap.
_STORE_MESSAGE = f"""
WITH existing AS (
    SELECT {_COLUMNS}, true AS replayed FROM messages
    WHERE id = $1 OR ($7::text IS NOT NULL AND channel_id = $2 AND sender_username = $4
                      AND client_msg_id = $7)
    LIMIT 1
), bump AS (
    UPDATE channels SET last_seq = last_seq + 1
    WHERE id = $2 AND NOT EXISTS (SELECT 1 FROM existing)
    RETURNING last_seq
), inserted AS (
    INSERT INTO messages (id, channel_id, seq, sender_id, sender_username, sender_is_guest,
                          content, client_msg_id)
    SELECT $1, $2, bump.last_seq, $3, $4, $5, $6, $7 FROM bump
    RETURNING {_COLUMNS}, false AS replayed
)
SELECT * FROM inserted UNION ALL SELECT * FROM existing
"""


class ChatStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_channel(self, channel_id: int) -> int:
        """Create the channel if it is new; return its last seq."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "INSERT INTO channels (id) VALUES ($1) ON CONFLICT (id)"
                " DO UPDATE SET id = EXCLUDED.id RETURNING last_seq",
                channel_id,
            )
        return int(row["last_seq"])

    async def store_messages(self, sends: list[SendCmd]) -> list[StoredMessage]:
        """Store a batch in one transaction, in order; return each message as stored."""
        async with self.pool.acquire() as conn, conn.transaction():
            guests = sorted({s.actor.username for s in sends if s.actor.is_guest})
            if guests:
                await conn.execute(
                    "INSERT INTO users (username, is_guest, role)"
                    " SELECT unnest($1::text[]), true, 'guest' ON CONFLICT (username) DO NOTHING",
                    guests,
                )
            channels = sorted({s.channel_id for s in sends})
            await conn.execute(
                "INSERT INTO channels (id) SELECT unnest($1::int[]) ON CONFLICT (id) DO NOTHING",
                channels,
            )
            stored = []
            for s in sends:
                sender_id = s.actor.user_id
                if sender_id is None:
                    sender_id = await conn.fetchval(
                        "SELECT id FROM users WHERE username = $1", s.actor.username
                    )
                row = await conn.fetchrow(
                    _STORE_MESSAGE,
                    uuid.UUID(s.msg_id),
                    s.channel_id,
                    sender_id,
                    s.actor.username,
                    s.actor.is_guest,
                    s.content,
                    s.client_msg_id,
                )
                stored.append(StoredMessage(**dict(row)))
        return stored

    async def last_messages(self, channel_id: int, limit: int) -> tuple[list[StoredMessage], int]:
        """The channel's last ``limit`` messages, oldest first, and its last seq."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            last_seq = await conn.fetchval(
                "SELECT last_seq FROM channels WHERE id = $1", channel_id
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM messages WHERE channel_id = $1 ORDER BY seq DESC LIMIT $2",
                channel_id,
                limit,
            )
        return [StoredMessage(**dict(r)) for r in reversed(rows)], int(last_seq or 0)

    async def messages_after(
        self, channel_id: int, after_seq: int, limit: int
    ) -> tuple[list[StoredMessage], int]:
        """Up to ``limit`` messages with seq above ``after_seq``, oldest first, and the last seq."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            last_seq = await conn.fetchval(
                "SELECT last_seq FROM channels WHERE id = $1", channel_id
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM messages WHERE channel_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT $3",
                channel_id,
                after_seq,
                limit,
            )
        return [StoredMessage(**dict(r)) for r in rows], int(last_seq or 0)

    async def create_guest(self, username: str) -> None:
        await self.pool.execute(
            "INSERT INTO users (username, is_guest, role) VALUES ($1, true, 'guest')"
            " ON CONFLICT (username) DO NOTHING",
            username,
        )

    async def max_guest_number(self) -> int:
        value = await self.pool.fetchval(
            "SELECT coalesce(max(substring(username FROM 6)::bigint), 0) FROM users"
            r" WHERE is_guest AND username ~ '^Guest[0-9]{1,18}$'"
        )
        return int(value)

    async def channel_ids(self) -> list[int]:
        return [r["id"] for r in await self.pool.fetch("SELECT id FROM channels")]
