"""The chat data the dashboard reads (chat-service writes it): channels, messages, sanctions."""

from __future__ import annotations

import uuid
from typing import Final

import asyncpg
from msgspec import Struct

from dashboard_service.schemas import (
    ChannelMessage,
    MessageSender,
    ReactionSummary,
    Sanction,
    UserMessage,
)
from justchat.wire import utc_timestamp

_SANCTION_COLUMNS: Final = "channel_id, username, kind, reason, created_by, created_at, expires_at"
_ACTIVE: Final = "(expires_at IS NULL OR expires_at > now())"
_MESSAGE_COLUMNS: Final = (
    "id, channel_id, seq, sender_username, sender_is_guest, content, client_msg_id, created_at"
)
# chat-service's summary of reactions (its store's ``_with_reactions``): the history frames and
# this API must agree on the order of emotes and of users.
_REACTIONS: Final = (
    "SELECT message_id, emote, count(*) AS count,"
    " array_agg(username ORDER BY created_at, username) AS users"
    " FROM reactions WHERE message_id = ANY($1::uuid[])"
    " GROUP BY message_id, emote ORDER BY message_id, min(created_at), emote"
)


class MessagePage(Struct, frozen=True, kw_only=True):
    count: int
    messages: list[UserMessage]


class HistoryPage(Struct, frozen=True, kw_only=True):
    messages: list[ChannelMessage]  # oldest first
    has_more: bool  # messages older than the page exist


def _sanction(row: asyncpg.Record) -> Sanction:
    return Sanction(
        channel_id=row["channel_id"],
        username=row["username"],
        kind=row["kind"],
        reason=row["reason"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


class ChatStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def channel_exists(self, channel_id: int) -> bool:
        found: bool = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1)", channel_id
        )
        return found

    async def history_page(
        self, channel_id: int, before_seq: int | None, limit: int
    ) -> HistoryPage | None:
        """A keyset page like chat-service's ``channel_history``: up to ``limit`` messages with
        seq below ``before_seq`` (the newest ones when it is None), oldest first, with their
        reactions; None when the channel does not exist."""
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1)", channel_id
            ):
                return None
            rows = await conn.fetch(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1"
                " AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
                channel_id,
                before_seq,
                limit + 1,  # one more than asked: whether older messages exist
            )
            page = list(reversed(rows[:limit]))
            reactions: dict[uuid.UUID, list[ReactionSummary]] = {}
            if page:
                for r in await conn.fetch(_REACTIONS, [row["id"] for row in page]):
                    reactions.setdefault(r["message_id"], []).append(
                        ReactionSummary(emote=r["emote"], count=r["count"], users=list(r["users"]))
                    )
        messages = [
            ChannelMessage(
                id=str(row["id"]),
                timestamp=utc_timestamp(row["created_at"]),
                channel_id=row["channel_id"],
                sender=MessageSender(
                    username=row["sender_username"], is_guest=row["sender_is_guest"]
                ),
                content=row["content"],
                seq=row["seq"],
                client_msg_id=row["client_msg_id"],
                reactions=reactions.get(row["id"], []),
            )
            for row in page
        ]
        return HistoryPage(messages=messages, has_more=len(rows) > limit)

    async def messages_by_sender(self, user_id: int, *, offset: int, limit: int) -> MessagePage:
        """A user's messages across channels, newest first, and how many there are in all."""
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            count: int = await conn.fetchval(
                "SELECT count(*) FROM messages WHERE sender_id = $1", user_id
            )
            rows = await conn.fetch(
                "SELECT channel_id, sender_username, created_at, content FROM messages"
                " WHERE sender_id = $1 ORDER BY created_at DESC, channel_id DESC, seq DESC"
                " LIMIT $2 OFFSET $3",
                user_id,
                limit,
                offset,
            )
        messages = [
            UserMessage(
                channel_id=row["channel_id"],
                sender_username=row["sender_username"],
                timestamp=row["created_at"],
                content=row["content"],
            )
            for row in rows
        ]
        return MessagePage(count=count, messages=messages)

    async def active_sanctions(self, channel_id: int, kind: str | None) -> list[Sanction]:
        """Unexpired mutes and bans of a channel (of one kind if given), newest first."""
        rows = await self.pool.fetch(
            f"SELECT {_SANCTION_COLUMNS} FROM sanctions"
            f" WHERE channel_id = $1 AND ($2::text IS NULL OR kind = $2) AND {_ACTIVE}"
            " ORDER BY created_at DESC, username, kind",
            channel_id,
            kind,
        )
        return [_sanction(row) for row in rows]
