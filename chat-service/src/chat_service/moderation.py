"""Moderation: kick, mute, unmute, ban and unban, from a gateway or from the REST API.

PostgreSQL holds the truth (``sanctions`` and ``audit_log``). Redis holds what gateways need to
enforce a mute on every send without asking chat-service: ``{ch:N}:mutes`` maps a username to
the mute's expiry in ms (0: until lifted), written before the mute is announced, so a mute stops
``chat_send`` and ``chat_typing`` on every gateway at once. Bans are enforced where joins are
handled (here). Kick and ban frames carry ``remove`` so that every gateway drops the target's
connections from the channel right after delivering the frame.

A command from the REST API carries a ``request_id``; its outcome (applied, or refused and why)
is pushed to ``reply:{id}``, a list the dashboard waits on with BLPOP.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import ClassVar, Final, cast

import asyncpg
import redis.asyncio as aioredis
from msgspec import Struct

from justchat import events, wire
from justchat.events import ModerateCmd, ModerateReply, Outcome
from justchat.keys import Keys
from justchat.members import member_list
from justchat.wire import MAX_SANCTION_S

log = logging.getLogger(__name__)

MODERATORS: Final = frozenset({"admin", "moderator"})
ACTIONS: Final = frozenset({"kick", "mute", "unmute", "ban", "unban"})
# A reply outlives any dashboard wait; nobody reads it after that, so it must not linger.
REPLY_TTL_S: Final = 60


class Refused(Exception):
    """The command may not run; the message is the error text for the moderator."""

    outcome: ClassVar[Outcome] = "refused"

    @property
    def wire_text(self) -> str:
        """The ``error`` frame's text for a moderator on a WebSocket."""
        return str(self)

    def reply(self) -> ModerateReply:
        """The answer for a REST caller."""
        return ModerateReply(outcome=self.outcome, detail=str(self))


class UnknownTarget(Refused):
    """The target is no user (a REST caller named it; gateways only name members)."""

    outcome = "no_user"


class Invalid(Refused):
    """The command does not validate; the message says why, the wire says ``Malformed``."""

    outcome = "invalid"

    @property
    def wire_text(self) -> str:
        return wire.ERR_MALFORMED


class Stored(Struct, frozen=True, kw_only=True):
    """A mute or ban as written: its timestamps, and whether it is new (not a renewal)."""

    created: bool
    created_at: datetime
    expires_at: datetime | None


def applied(stored: Stored | None) -> ModerateReply:
    """The answer for a REST caller whose command ran (``stored``: the mute or ban written)."""
    if stored is None:
        return ModerateReply(outcome="applied")
    return ModerateReply(
        outcome="applied",
        created=stored.created,
        created_at=stored.created_at,
        expires_at=stored.expires_at,
    )


class SanctionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def role_of(self, username: str) -> str | None:
        role = await self.pool.fetchval("SELECT role FROM users WHERE username = $1", username)
        return None if role is None else str(role)

    async def impose(self, cmd: ModerateCmd, kind: str, duration_s: int | None) -> Stored:
        """Write (or renew) a mute or ban and its audit row.

        ``duration_s`` is at most ``MAX_SANCTION_S``: the ``$6::int`` below holds no more.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO channels (id) VALUES ($1) ON CONFLICT DO NOTHING", cmd.channel_id
            )
            # xmax is 0 on a row version this statement inserted, not on one it updated.
            row = await conn.fetchrow(
                "INSERT INTO sanctions (channel_id, username, kind, reason, created_by,"
                " expires_at) VALUES ($1, $2, $3, $4, $5,"
                " CASE WHEN $6::int IS NULL THEN NULL ELSE now() + make_interval(secs => $6) END)"
                " ON CONFLICT (channel_id, username, kind) DO UPDATE SET reason = EXCLUDED.reason,"
                " created_by = EXCLUDED.created_by, created_at = now(),"
                " expires_at = EXCLUDED.expires_at"
                " RETURNING created_at, expires_at, xmax = 0 AS created",
                cmd.channel_id,
                cmd.target,
                kind,
                cmd.reason,
                cmd.actor.username,
                duration_s,
            )
            await _audit(conn, cmd, row["expires_at"])
        return Stored(
            created=row["created"], created_at=row["created_at"], expires_at=row["expires_at"]
        )

    async def lift(self, cmd: ModerateCmd, kind: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM sanctions WHERE channel_id = $1 AND username = $2 AND kind = $3",
                cmd.channel_id,
                cmd.target,
                kind,
            )
            await _audit(conn, cmd, None)

    async def kick(self, cmd: ModerateCmd) -> None:
        async with self.pool.acquire() as conn:
            await _audit(conn, cmd, None)

    async def is_banned(self, channel_id: int, username: str) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT 1 FROM sanctions WHERE channel_id = $1 AND username = $2 AND kind = 'ban'"
                " AND (expires_at IS NULL OR expires_at > now())",
                channel_id,
                username,
            )
        )

    async def active_mutes(self) -> list[tuple[int, str, datetime | None]]:
        rows = await self.pool.fetch(
            "SELECT channel_id, username, expires_at FROM sanctions WHERE kind = 'mute'"
            " AND (expires_at IS NULL OR expires_at > now())"
        )
        return [(r["channel_id"], r["username"], r["expires_at"]) for r in rows]


async def _audit(conn: asyncpg.Connection, cmd: ModerateCmd, expires_at: datetime | None) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, actor_id, action, target, channel_id, reason, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        cmd.actor.username,
        cmd.actor.user_id,
        cmd.action,
        cmd.target,
        cmd.channel_id,
        cmd.reason,
        expires_at,
    )


def expiry_ms(expires_at: datetime | None) -> int:
    """The value kept in ``{ch:N}:mutes``: epoch ms, or 0 for a mute until lifted."""
    return 0 if expires_at is None else int(expires_at.timestamp() * 1000)


class Moderation:
    def __init__(self, store: SanctionStore, redis: aioredis.Redis, keys: Keys) -> None:
        self.store, self.redis, self.keys = store, redis, keys

    async def apply(self, cmd: ModerateCmd) -> Stored | None:
        """Check, record, enforce and announce one action; a mute or ban as stored.

        Raises ``Refused`` (or a subclass) when the command may not run; nothing is changed then.
        """
        if cmd.action not in ACTIONS:
            raise Invalid(f"Unknown action {cmd.action!r}")
        if cmd.duration_s is not None and not 0 <= cmd.duration_s <= MAX_SANCTION_S:
            raise Invalid(f"duration_s must be between 0 and {MAX_SANCTION_S} seconds")
        if "\x00" in cmd.target or "\x00" in (cmd.reason or ""):
            # PostgreSQL text cannot hold NUL: the write would fail for good.
            raise Invalid("target and reason may not contain NUL characters")
        if cmd.actor.is_guest or cmd.actor.user_id is None:
            raise Refused(wire.ERR_NO_PERMISSION)
        # The token's role may be stale (a demoted moderator or admin): PostgreSQL decides.
        actor_role = await self.store.role_of(cmd.actor.username)
        if actor_role not in MODERATORS:
            raise Refused(wire.ERR_NO_PERMISSION)
        target_role = await self.store.role_of(cmd.target)
        # A gateway names the target as its member list shows it, which may be a guest whose
        # row is not stored yet; a REST caller names it from the users table, where a missing
        # row means the user is gone.
        if target_role is None and cmd.request_id is not None:
            raise UnknownTarget("User not found")
        if target_role == "admin" and actor_role != "admin":
            raise Refused(wire.ERR_NO_PERMISSION)
        duration = cmd.duration_s or None  # 0 and null both mean until lifted
        channel = cmd.channel_id
        stored = None
        match cmd.action:
            case "kick":
                if not await self._is_member(channel, cmd.target):
                    return None  # PROTOCOL: a target that is not a member makes nothing happen
                await self.store.kick(cmd)
                await self._announce(
                    channel,
                    wire.KickFrame,
                    wire.KickOut(channel_id=channel, target=cmd.target, reason=cmd.reason),
                    remove=cmd.target,
                )
            case "mute":
                stored = await self.store.impose(cmd, "mute", duration)
                await self.redis.hset(
                    self.keys.channel_mutes(channel), cmd.target, expiry_ms(stored.expires_at)
                )
                await self._announce(
                    channel,
                    wire.MuteFrame,
                    wire.MuteOut(
                        channel_id=channel, target=cmd.target, duration=duration, reason=cmd.reason
                    ),
                )
            case "unmute":
                await self.store.lift(cmd, "mute")
                await self.redis.hdel(self.keys.channel_mutes(channel), cmd.target)
                await self._announce(
                    channel,
                    wire.UnmuteFrame,
                    wire.MuteOut(channel_id=channel, target=cmd.target, duration=None, reason=""),
                )
            case "ban":
                stored = await self.store.impose(cmd, "ban", duration)
                await self._announce(
                    channel,
                    wire.BanFrame,
                    wire.MuteOut(
                        channel_id=channel, target=cmd.target, duration=duration, reason=cmd.reason
                    ),
                    remove=cmd.target,
                )
            case "unban":
                await self.store.lift(cmd, "ban")
                await self._announce(
                    channel,
                    wire.UnbanFrame,
                    wire.MuteOut(channel_id=channel, target=cmd.target, duration=None, reason=""),
                )
        log.info("%s %s %s in channel %s", cmd.actor.username, cmd.action, cmd.target, channel)
        return stored

    async def reply(self, request_id: str, reply: ModerateReply) -> None:
        """Answer a REST command: the dashboard waits on this list with BLPOP."""
        key = self.keys.moderation_reply(request_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, events.encode(reply))
            pipe.expire(key, REPLY_TTL_S)
            await pipe.execute()

    async def _is_member(self, channel_id: int, username: str) -> bool:
        values = await self.redis.hvals(self.keys.channel_conns(channel_id))
        return any(user.username == username for user in member_list(cast(list[bytes], values)))

    async def _announce(
        self,
        channel_id: int,
        frame_type: type[wire.ServerFrame],
        payload: Struct,
        remove: str | None = None,
    ) -> None:
        event = events.ChannelEvent(
            seq=0, frame=wire.fresh_frame(frame_type, payload), remove=remove
        )
        await self.redis.publish(self.keys.channel_topic(channel_id), events.encode(event))

    async def seed_mutes(self) -> int:
        """Rebuild every ``{ch:N}:mutes`` hash from PostgreSQL (after Redis lost its data)."""
        mutes = await self.store.active_mutes()
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel_id, username, expires_at in mutes:
                pipe.hset(self.keys.channel_mutes(channel_id), username, expiry_ms(expires_at))
            await pipe.execute()
        return len(mutes)
