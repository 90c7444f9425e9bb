"""Presence state in Redis: which connections are in which channel, updated atomically.

A channel's connections are a hash ``{ch:N}:conns``: field ``gateway|conn``, value
``first_seen_ms|is_guest|username``, built and parsed by ``justchat.members`` (the Lua below
matches the same shape). A user is a member while any of its connections is in the hash, so
several tabs or gateways show it once. Each gateway's connections are also indexed in
``gw:{id}:conns`` so a dead gateway's can be found and removed.
"""

from __future__ import annotations

import time
from typing import cast

import redis.asyncio as aioredis
from msgspec import Struct

from justchat.events import Origin
from justchat.keys import Keys
from justchat.members import Member, format_member, member_list, parse_member
from justchat.wire import UserFrom

__all__ = [
    "ONLINE_MARK",
    "JoinResult",
    "LeaveResult",
    "Member",
    "PresenceStore",
    "member_list",
    "parse",
]

_JOIN = """
local function user_of(v) return string.match(v, '^%d+|[01]|(.*)$') end
local present = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
    present = 2  -- this very connection, announced again: keep its first-seen time
else
    for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
        if user_of(v) == ARGV[3] then present = 1; break end
    end
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], redis.call('HLEN', KEYS[1]), ARGV[5])
local out = {present}
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do table.insert(out, v) end
return out
"""

_LEAVE = """
redis.call('SREM', KEYS[2], ARGV[2])
local gone = redis.call('HGET', KEYS[1], ARGV[1])
if not gone then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local n = redis.call('HLEN', KEYS[1])
if n == 0 then redis.call('ZREM', KEYS[3], ARGV[3]) else redis.call('ZADD', KEYS[3], n, ARGV[3]) end
local out = {gone}
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do table.insert(out, v) end
return out
"""


_ONLINE = """
if ARGV[3] == '1' then
    if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
        redis.call('SADD', KEYS[3], ARGV[4])
        return redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
    end
    return -1
end
redis.call('SREM', KEYS[3], ARGV[4])
local user = redis.call('HGET', KEYS[1], ARGV[1])
if not user then return -1 end
redis.call('HDEL', KEYS[1], ARGV[1])
local left = redis.call('HINCRBY', KEYS[2], user, -1)
if left <= 0 then redis.call('HDEL', KEYS[2], user) end
return left
"""

ONLINE_MARK = "~"  # stands for the channel in gw:{id}:conns entries that record a connection


# The member format moved to justchat.members; these names stay importable from here.
parse = parse_member


class JoinResult(Struct, frozen=True):
    already_present: bool  # the user had another connection in the channel
    members: list[UserFrom]
    again: bool = False  # this connection was in already (a gateway announcing it again)

    def before(self, user: UserFrom) -> list[UserFrom]:
        """The member list just before ``user``'s first connection joined."""
        return [m for m in self.members if m.username != user.username]


class LeaveResult(Struct, frozen=True):
    user: UserFrom
    still_present: bool  # the user has another connection in the channel
    members: list[UserFrom]
    before: list[UserFrom]  # the member list just before this connection left


class PresenceStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self._join = redis.register_script(_JOIN)
        self._leave = redis.register_script(_LEAVE)
        self._online = redis.register_script(_ONLINE)

    async def join(self, channel_id: int, origin: Origin, user: UserFrom) -> JoinResult:
        value = format_member(Member(int(time.time() * 1000), user))
        reply = await self._join(
            keys=[
                self.keys.channel_conns(channel_id),
                self.keys.gateway_conns(origin.gateway),
                self.keys.active_channels,
            ],
            args=[_field(origin), value, user.username, f"{channel_id}|{origin.conn}", channel_id],
        )
        return JoinResult(
            already_present=bool(reply[0]), members=member_list(reply[1:]), again=reply[0] == 2
        )

    async def leave(self, channel_id: int, origin: Origin) -> LeaveResult | None:
        """Remove one connection; None if it was not there (already left or expired)."""
        reply = await self._leave(
            keys=[
                self.keys.channel_conns(channel_id),
                self.keys.gateway_conns(origin.gateway),
                self.keys.active_channels,
            ],
            args=[_field(origin), f"{channel_id}|{origin.conn}", channel_id],
        )
        if not reply:
            return None
        gone = parse_member(reply[0]).user
        rest = reply[1:]
        return LeaveResult(
            user=gone,
            still_present=any(parse_member(v).user.username == gone.username for v in rest),
            members=member_list(rest),
            before=member_list([reply[0], *rest]),
        )

    async def set_online(self, origin: Origin, username: str, online: bool) -> int:
        """Record a connection opening or closing (``username`` matters only when opening).

        Returns the user's live connections afterwards, or -1 when nothing changed (a repeated
        or late command).
        """
        reply = await self._online(
            keys=[
                self.keys.online_conns,
                self.keys.online_users,
                self.keys.gateway_conns(origin.gateway),
            ],
            args=[_field(origin), username, "1" if online else "0", f"{ONLINE_MARK}|{origin.conn}"],
        )
        return int(reply)

    async def dead_gateways(self) -> list[str]:
        now_ms = int(time.time() * 1000)
        found = await self.redis.zrangebyscore(self.keys.gateways, "-inf", now_ms)
        return [cast(bytes, g).decode() for g in found]

    async def gateway_connections(self, gateway: str) -> tuple[list[tuple[int, str]], list[str]]:
        """What a gateway still has in presence: (channel, conn) pairs, and its online conns."""
        pairs, online = [], []
        for item in await self.redis.smembers(self.keys.gateway_conns(gateway)):
            channel, conn = cast(bytes, item).decode().split("|", 1)
            if channel == ONLINE_MARK:
                online.append(conn)
            else:
                pairs.append((int(channel), conn))
        return pairs, online

    async def forget_gateway(self, gateway: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.gateway_conns(gateway))
            pipe.zrem(self.keys.gateways, gateway)
            pipe.hdel(self.keys.gateway_urls, gateway)
            await pipe.execute()


def _field(origin: Origin) -> str:
    return f"{origin.gateway}|{origin.conn}"
