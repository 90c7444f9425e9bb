"""All of chat-service's SQL: messages, channels, guests."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from msgspec import Struct

from justchat.events import SendCmd
from justchat.wire import ReactionSummary


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
    reactions: list[ReactionSummary] | None = None  # filled in for history, not for live sends


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
        """The channel's last ``limit`` messages, oldest first, with reactions, and its last seq."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            last_seq = await conn.fetchval(
                "SELECT last_seq FROM channels WHERE id = $1", channel_id
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM messages WHERE channel_id = $1 ORDER BY seq DESC LIMIT $2",
                channel_id,
                limit,
            )
            messages = await _with_reactions(conn, list(reversed(rows)))
        return messages, int(last_seq or 0)

    async def page(
        self, channel_id: int, before_seq: int | None, limit: int
    ) -> tuple[list[StoredMessage], bool]:
        """Keyset page: up to ``limit`` messages below ``before_seq`` (newest page first),
        oldest first within the page, with reactions; and whether older ones exist."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM messages WHERE channel_id = $1"
                " AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
                channel_id,
                before_seq,
                limit + 1,
            )
            has_more = len(rows) > limit
            messages = await _with_reactions(conn, list(reversed(rows[:limit])))
        return messages, has_more

    async def react(
        self, *, message_id: uuid.UUID, channel_id: int, username: str, emote: str, add: bool
    ) -> int | None:
        """Add or remove one reaction (idempotent); the emote's count after, or None if the
        message is not in that channel."""
        async with self.pool.acquire() as conn, conn.transaction():
            exists = await conn.fetchval(
                "SELECT 1 FROM messages WHERE id = $1 AND channel_id = $2", message_id, channel_id
            )
            if not exists:
                return None
            if add:
                await conn.execute(
                    "INSERT INTO reactions (message_id, username, emote) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING",
                    message_id,
                    username,
                    emote,
                )
            else:
                await conn.execute(
                    "DELETE FROM reactions WHERE message_id = $1 AND username = $2 AND emote = $3",
                    message_id,
                    username,
                    emote,
                )
            count = await conn.fetchval(
                "SELECT count(*) FROM reactions WHERE message_id = $1 AND emote = $2",
                message_id,
                emote,
            )
        return int(count)

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
            messages = await _with_reactions(conn, rows)
        return messages, int(last_seq or 0)

    async def reactions_for(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[ReactionSummary]]:
        async with self.pool.acquire() as conn:
            return await _reactions(conn, ids)

    async def channel_exists(self, channel_id: int) -> bool:
        return bool(await self.pool.fetchval("SELECT 1 FROM channels WHERE id = $1", channel_id))

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


async def _with_reactions(
    conn: asyncpg.Connection, rows: list[asyncpg.Record]
) -> list[StoredMessage]:
    """Messages from rows, each with its reactions summarised (emote, count, users)."""
    summary = await _reactions(conn, [r["id"] for r in rows])
    return [StoredMessage(**dict(r), reactions=summary.get(r["id"], [])) for r in rows]


async def _reactions(
    conn: asyncpg.Connection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[ReactionSummary]]:
    """Each message's reactions: emote, count and users, in the order they were first used."""
    summary: dict[uuid.UUID, list[ReactionSummary]] = {}
    if ids:
        for r in await conn.fetch(
            "SELECT message_id, emote, count(*) AS count,"
            " array_agg(username ORDER BY created_at, username) AS users"
            " FROM reactions WHERE message_id = ANY($1::uuid[])"
            " GROUP BY message_id, emote ORDER BY message_id, min(created_at), emote",
            ids,
        ):
            summary.setdefault(r["message_id"], []).append(
                ReactionSummary(emote=r["emote"], count=r["count"], users=list(r["users"]))
            )
    return summary
