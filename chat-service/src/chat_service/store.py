"""All of chat-service's SQL: messages, channels, guests."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Final

import asyncpg
import msgspec
from msgspec import Struct

from justchat.errors import JustchatError
from justchat.events import SendCmd
from justchat.wire import ReactionSummary

log = logging.getLogger(__name__)


class StoreError(JustchatError):
    """PostgreSQL did something the store's statements rule out (a broken invariant)."""


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

_FIELDS = tuple(c.strip() for c in _COLUMNS.split(","))

# Several channels' last messages, newest first per channel, each row with its channel's
# last_seq (a channel without messages gives one row of NULL message columns).
_LAST_MESSAGES_OF = f"""
SELECT c.id AS channel, c.last_seq, m.*
FROM channels c
LEFT JOIN LATERAL (
    SELECT {_COLUMNS} FROM messages WHERE channel_id = c.id ORDER BY seq DESC LIMIT $2
) m ON true
WHERE c.id = ANY($1::int[])
ORDER BY c.id, m.seq DESC
"""

# A batch is stored with three statements whatever its size (two once its guests' ids are known):
# find the rows already stored, resolve guests' ids, then reserve each channel's seq range and
# insert every new row in one statement. That last one is atomic: if a concurrent writer (a stale
# owner, a replay) stored one of the rows first, a unique constraint fails it whole, its seq
# reservation included, and the batch is looked up again; so the order can never fork or gap.
_M_COLUMNS = ", ".join(f"m.{c}" for c in _FIELDS)
_FIND_STORED = f"""
SELECT {_COLUMNS} FROM messages WHERE id = ANY($1::uuid[])
UNION ALL
SELECT {_M_COLUMNS} FROM messages m
JOIN unnest($2::int[], $3::text[], $4::text[]) AS k (channel, sender, client_msg_id)
  ON m.channel_id = k.channel AND m.sender_username = k.sender
 AND m.client_msg_id = k.client_msg_id AND m.client_msg_id IS NOT NULL
"""

# Guests the gateway named may not be in ``users`` yet. A name inserted by a concurrent
# transaction is invisible to this statement's snapshot: the caller looks those up again.
_GUEST_IDS = """
WITH added AS (
    INSERT INTO users (username, is_guest, role)
    SELECT unnest($1::text[]), true, 'guest' ON CONFLICT (username) DO NOTHING
    RETURNING id, username
)
SELECT id, username FROM added
UNION ALL
SELECT id, username FROM users WHERE username = ANY($2::text[])
"""

_USER_IDS = "SELECT id, username FROM users WHERE username = ANY($1::text[])"

# Channels are upserted in id order, so two writers lock their rows in the same order and
# cannot deadlock. A message's seq is its channel's new last_seq minus ``back`` (how many new
# messages of that channel follow it in the batch): one gap-free range per channel per batch.
_INSERT_NEW = """
WITH reserved AS (
    INSERT INTO channels (id, last_seq)
    SELECT * FROM unnest($1::int[], $2::bigint[]) ORDER BY 1
    ON CONFLICT (id) DO UPDATE SET last_seq = channels.last_seq + EXCLUDED.last_seq
    RETURNING id, last_seq
), inserted AS (
    INSERT INTO messages (id, channel_id, seq, sender_id, sender_username, sender_is_guest,
                          content, client_msg_id)
    SELECT m.id, m.channel_id, r.last_seq - m.back, m.sender_id, m.sender_username,
           m.sender_is_guest, m.content, m.client_msg_id
    FROM unnest($3::uuid[], $4::int[], $5::bigint[], $6::bigint[], $7::text[], $8::bool[],
                $9::text[], $10::text[])
         AS m (id, channel_id, back, sender_id, sender_username, sender_is_guest, content,
               client_msg_id)
    JOIN reserved r ON r.id = m.channel_id
    RETURNING 1
)
SELECT id, last_seq, now() AS created_at, (SELECT count(*) FROM inserted) AS inserted
FROM reserved
"""

GUEST_CACHE_SIZE: Final = 100_000

# Attempts at a batch that races a concurrent writer of the same rows (each attempt sees more
# of them stored, so a second one normally succeeds).
_STORE_ATTEMPTS = 3


class ChatStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Guests' ids by name, so that their sends need no lookup: names are never reused
        # (a counter hands them out) and ids never change. Cleared when full, and when an
        # insert finds a cached guest deleted.
        self.guest_ids: dict[str, int] = {}

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
        """Store a batch, in order; return each message as stored.

        A send whose id, or whose (channel, sender, client_msg_id), is already stored (earlier,
        or earlier in this batch) stores nothing and is answered with that message, ``replayed``.
        """
        if not sends:
            return []
        attempt = 1
        async with self.pool.acquire() as conn:
            while True:
                try:
                    return await _store_batch(conn, sends, self.guest_ids)
                except asyncpg.ForeignKeyViolationError:
                    if attempt == _STORE_ATTEMPTS or not self.guest_ids:
                        raise
                    attempt += 1
                    self.guest_ids.clear()
                except asyncpg.UniqueViolationError:
                    if attempt == _STORE_ATTEMPTS:
                        raise
                    attempt += 1
                    log.info("a concurrent writer stored part of a batch; looking it up again")

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

    async def last_messages_of(
        self, channel_ids: list[int], limit: int
    ) -> dict[int, tuple[list[StoredMessage], int]]:
        """``last_messages`` of several channels at once: each channel's last ``limit``
        messages, oldest first, with reactions, and its last seq. The messages and last seqs
        come from one statement, so they agree (one snapshot)."""
        out: dict[int, tuple[list[StoredMessage], int]] = {c: ([], 0) for c in channel_ids}
        if not channel_ids:
            return out
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_LAST_MESSAGES_OF, channel_ids, limit)
            summary = await _reactions(conn, [r["id"] for r in rows if r["id"] is not None])
        for r in reversed(rows):  # newest first per channel: reversed is oldest first
            messages, _ = out[r["channel"]]
            out[r["channel"]] = (messages, int(r["last_seq"]))
            if r["id"] is not None:
                messages.append(
                    StoredMessage(
                        **{name: r[name] for name in _FIELDS}, reactions=summary.get(r["id"], [])
                    )
                )
        return out

    async def ensure_channels(self, channel_ids: list[int]) -> None:
        """Create those of the channels that are new (in id order: no deadlock with a batch)."""
        await self.pool.execute(
            "INSERT INTO channels (id) SELECT unnest($1::int[]) ORDER BY 1"
            " ON CONFLICT (id) DO NOTHING",
            sorted(channel_ids),
        )

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


_Key = tuple[int, str, str]  # (channel, sender, client_msg_id)


def _key(send: SendCmd) -> _Key | None:
    if send.client_msg_id is None:
        return None
    return (send.channel_id, send.actor.username, send.client_msg_id)


class BatchPlan(Struct, kw_only=True):
    """Which sends of a batch are new, and what every send is answered with.

    ``answers[i]`` is either a message already stored or the index in ``new`` of the send that
    stores send i's message (its own, or an earlier one of the batch that it repeats).
    """

    new: list[SendCmd]
    new_ids: list[uuid.UUID]  # the ids of ``new``, parsed
    answers: list[StoredMessage | int]


def plan_batch(
    sends: list[SendCmd], ids: list[uuid.UUID], stored: list[StoredMessage]
) -> BatchPlan:
    """Match each send, in order, against the rows already stored and the earlier new sends:
    by id first, then by (channel, sender, client_msg_id), as if they were stored one by one."""
    stored_by_id = {m.id: m for m in stored}
    stored_by_key = {
        (m.channel_id, m.sender_username, m.client_msg_id): m
        for m in stored
        if m.client_msg_id is not None
    }
    new: list[SendCmd] = []
    new_ids: list[uuid.UUID] = []
    new_by_id: dict[uuid.UUID, int] = {}
    new_by_key: dict[_Key, int] = {}
    answers: list[StoredMessage | int] = []
    for send, msg_id in zip(sends, ids, strict=True):
        key = _key(send)
        found = stored_by_id.get(msg_id) or (None if key is None else stored_by_key.get(key))
        if found is not None:
            answers.append(found)
            continue
        index = new_by_id.get(msg_id)
        if index is None and key is not None:
            index = new_by_key.get(key)
        if index is None:
            index = len(new)
            new.append(send)
            new_ids.append(msg_id)
            new_by_id[msg_id] = index
            if key is not None:
                new_by_key[key] = index
        answers.append(index)
    return BatchPlan(new=new, new_ids=new_ids, answers=answers)


async def _store_batch(
    conn: asyncpg.Connection, sends: list[SendCmd], guest_ids: dict[str, int]
) -> list[StoredMessage]:
    ids = [uuid.UUID(s.msg_id) for s in sends]
    keyed = [s for s in sends if s.client_msg_id is not None]
    rows = await conn.fetch(
        _FIND_STORED,
        ids,
        [s.channel_id for s in keyed],
        [s.actor.username for s in keyed],
        [s.client_msg_id for s in keyed],
    )
    plan = plan_batch(sends, ids, [StoredMessage(**dict(r), replayed=True) for r in rows])
    created = await _insert_new(conn, plan.new, plan.new_ids, guest_ids) if plan.new else []
    answers = []
    answered: set[int] = set()
    for answer in plan.answers:
        if isinstance(answer, StoredMessage):
            answers.append(answer)
        elif answer not in answered:  # the send that stored it
            answered.add(answer)
            answers.append(created[answer])
        else:  # repeats an earlier send of this batch
            answers.append(msgspec.structs.replace(created[answer], replayed=True))
    return answers


async def _insert_new(
    conn: asyncpg.Connection, new: list[SendCmd], ids: list[uuid.UUID], guest_ids: dict[str, int]
) -> list[StoredMessage]:
    """Insert messages known not to be stored yet, with the next seqs of their channels."""
    await _resolve_guests(conn, new, guest_ids)
    counts: dict[int, int] = {}
    for s in new:
        counts[s.channel_id] = counts.get(s.channel_id, 0) + 1
    placed: dict[int, int] = {}
    back = []
    for s in new:
        placed[s.channel_id] = placed.get(s.channel_id, 0) + 1
        back.append(counts[s.channel_id] - placed[s.channel_id])
    rows = await conn.fetch(
        _INSERT_NEW,
        list(counts),
        list(counts.values()),
        ids,
        [s.channel_id for s in new],
        back,
        [
            guest_ids.get(s.actor.username) if s.actor.user_id is None else s.actor.user_id
            for s in new
        ],
        [s.actor.username for s in new],
        [s.actor.is_guest for s in new],
        [s.content for s in new],
        [s.client_msg_id for s in new],
    )
    last_seq = {r["id"]: r["last_seq"] for r in rows}
    if len(last_seq) != len(counts) or any(r["inserted"] != len(new) for r in rows):
        raise StoreError(f"batch of {len(new)} stored {rows[0]['inserted'] if rows else 0}")
    created_at = rows[0]["created_at"]
    return [
        StoredMessage(
            id=msg_id,
            channel_id=s.channel_id,
            seq=last_seq[s.channel_id] - b,
            sender_username=s.actor.username,
            sender_is_guest=s.actor.is_guest,
            content=s.content,
            client_msg_id=s.client_msg_id,
            created_at=created_at,
        )
        for s, msg_id, b in zip(new, ids, back, strict=True)
    ]


async def _resolve_guests(
    conn: asyncpg.Connection, sends: list[SendCmd], guest_ids: dict[str, int]
) -> None:
    """Add to ``guest_ids`` the senders the gateway knows by name only (guests), creating
    guests as needed."""
    unknown = sorted(
        {s.actor.username for s in sends if s.actor.user_id is None} - guest_ids.keys()
    )
    if not unknown:
        return
    guests = sorted({s.actor.username for s in sends if s.actor.is_guest} & set(unknown))
    found = {r["username"]: r["id"] for r in await conn.fetch(_GUEST_IDS, guests, unknown)}
    missing = [name for name in unknown if name not in found]
    if missing:  # inserted by a transaction that committed after this statement began
        found.update({r["username"]: r["id"] for r in await conn.fetch(_USER_IDS, missing)})
    if len(guest_ids) + len(found) > GUEST_CACHE_SIZE:
        guest_ids.clear()
    guest_ids.update(found)


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
