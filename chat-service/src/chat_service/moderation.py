"""Moderation: kick, mute, unmute, ban and unban, from a gateway or from the REST API.

PostgreSQL holds the truth (``sanctions`` and ``audit_log``). Redis holds what gateways need to
enforce a mute on every send without asking chat-service: ``{ch:N}:mutes`` maps a username to
the mute's expiry in ms (0: until lifted), written before the mute is announced, so a mute stops
``chat_send`` and ``chat_typing`` on every gateway at once. Bans are enforced where joins are
handled (here). Kick and ban frames carry ``remove`` so that every gateway drops the target's
connections from the channel right after delivering the frame.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final, cast

import asyncpg
import redis.asyncio as aioredis
from msgspec import Struct

from justchat import events, wire
from justchat.events import ModerateCmd
from justchat.keys import Keys
from justchat.members import member_list

log = logging.getLogger(__name__)

MODERATORS: Final = frozenset({"admin", "moderator"})
ACTIONS: Final = frozenset({"kick", "mute", "unmute", "ban", "unban"})


class Refused(Exception):
    """The command may not run; the message is the error text for the moderator."""


class SanctionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def role_of(self, username: str) -> str | None:
        role = await self.pool.fetchval("SELECT role FROM users WHERE username = $1", username)
        return None if role is None else str(role)

    async def impose(self, cmd: ModerateCmd, kind: str, duration_s: int | None) -> datetime | None:
        """Write (or renew) a mute or ban and its audit row; return when it expires."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO channels (id) VALUES ($1) ON CONFLICT DO NOTHING", cmd.channel_id
            )
            expires_at: datetime | None = await conn.fetchval(
                "INSERT INTO sanctions (channel_id, username, kind, reason, created_by,"
                " expires_at) VALUES ($1, $2, $3, $4, $5,"
                " CASE WHEN $6::int IS NULL THEN NULL ELSE now() + make_interval(secs => $6) END)"
                " ON CONFLICT (channel_id, username, kind) DO UPDATE SET reason = EXCLUDED.reason,"
                " created_by = EXCLUDED.created_by, created_at = now(),"
                " expires_at = EXCLUDED.expires_at RETURNING expires_at",
                cmd.channel_id,
                cmd.target,
                kind,
                cmd.reason,
                cmd.actor.username,
                duration_s,
            )
            await _audit(conn, cmd, expires_at)
        return expires_at

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

    async def apply(self, cmd: ModerateCmd) -> None:
        """Check, record, enforce and announce one action. Raises ``Refused``."""
        if cmd.action not in ACTIONS:
            raise Refused(wire.ERR_MALFORMED)
        if cmd.actor.is_guest or cmd.actor.user_id is None:
            raise Refused(wire.ERR_NO_PERMISSION)
        # The token's role may be stale (a demoted moderator): PostgreSQL decides.
        if await self.store.role_of(cmd.actor.username) not in MODERATORS:
            raise Refused(wire.ERR_NO_PERMISSION)
        target_role = await self.store.role_of(cmd.target)
        if target_role == "admin" and cmd.actor.role != "admin":
            raise Refused(wire.ERR_NO_PERMISSION)
        duration = cmd.duration_s or None  # 0 and null both mean until lifted
        channel = cmd.channel_id
        match cmd.action:
            case "kick":
                if not await self._is_member(channel, cmd.target):
                    return  # PROTOCOL: a target that is not a member makes nothing happen
                await self.store.kick(cmd)
                await self._announce(
                    channel,
                    wire.KickFrame,
                    wire.KickOut(channel_id=channel, target=cmd.target, reason=cmd.reason),
                    remove=cmd.target,
                )
            case "mute":
                expires_at = await self.store.impose(cmd, "mute", duration)
                await self.redis.hset(
                    self.keys.channel_mutes(channel), cmd.target, expiry_ms(expires_at)
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
                await self.store.impose(cmd, "ban", duration)
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
