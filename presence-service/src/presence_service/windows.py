"""Member-list windows: about one ``channel_members`` per interval per channel, never reordered.

Lists are paced by a token bucket per channel: a change goes out at once (its list, then its join
or leave frame) while the channel has credit, BURST lists' worth after a quiet spell and one more
per interval. Without credit the change is held in Redis, in order; when credit is back (the
window's end) one list, read from Redis then (the truth), is broadcast, followed by every frame
held. So each member still sees a list before the join or leave it explains, a joiner gets its
list once, and a join storm costs one list per interval.

One exception keeps that rule exact: a user who appears twice in one window (a reload: leave then
join) cannot be explained by one list. The held frames are then cut into segments in which each
user appears once; each segment is preceded by the list as it stood after its last frame (recorded
when the next segment began), the last one by the truth.

The window lives in Redis (``{ch:N}:members-held``, ``members-users``, ``members-pace`` and the
``members-due`` index), not in the replica that held it: if that replica dies or hands its
partition over, any replica finds the overdue window and sends it.
"""

from __future__ import annotations

from typing import Final, cast

import redis.asyncio as aioredis
from msgspec import Struct

from justchat.keys import Keys
from justchat.members import member_list
from justchat.wire import UserFrom

FRAME: Final = b"f"  # a held join or leave frame
LIST: Final = b"l"  # the list that precedes the segment before it

# Pacing is a token bucket kept as credit in milliseconds: a list costs one interval, credit grows
# with time up to BURST intervals. Missing key: full credit.
_CREDIT = """
local interval, now, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function credit()
    local v = redis.call('HMGET', KEYS[3], 'credit', 'at')
    if not v[1] then return cap end
    return math.min(cap, tonumber(v[1]) + now - tonumber(v[2]))
end
local function spend(c)
    redis.call('HSET', KEYS[3], 'credit', c - interval, 'at', now)
    redis.call('PEXPIRE', KEYS[3], cap + interval)  -- full again by then: the key can go
end
"""

_HOLD = (
    _CREDIT
    + """
local due
if redis.call('LLEN', KEYS[1]) == 0 then
    local c = credit()
    if c >= interval then
        spend(c)
        return -1
    end
    due = now + interval - c
    redis.call('DEL', KEYS[2])
    redis.call('ZADD', KEYS[4], due, ARGV[6])
else
    if redis.call('SISMEMBER', KEYS[2], ARGV[5]) == 1 then
        redis.call('RPUSH', KEYS[1], ARGV[7])
        redis.call('DEL', KEYS[2])
    end
    due = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[6]) or now)
    redis.call('ZADD', KEYS[4], 'NX', due, ARGV[6])
end
redis.call('RPUSH', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
return due
"""
)

_TAKE = (
    _CREDIT
    + """
redis.call('ZREM', KEYS[4], ARGV[4])
local held = redis.call('LRANGE', KEYS[1], 0, -1)
if #held == 0 then return false end
redis.call('DEL', KEYS[1], KEYS[2])
spend(credit())
local out = {#held}
for _, v in ipairs(held) do table.insert(out, v) end
for _, v in ipairs(redis.call('HVALS', KEYS[5])) do table.insert(out, v) end
return out
"""
)

# A window nobody sent for this long (every replica down) is dropped: the next change sends the
# truth again.
KEEP_MS: Final = 60_000
# Lists a quiet channel may send at once before pacing starts: a few people arriving together
# (or a test's room) see each other at once; a storm still gets one list per interval.
BURST: Final = 3


class Window(Struct, frozen=True):
    """A closed window: what was held, in order, and the channel's members when it closed."""

    held: list[bytes]
    members: list[UserFrom]


def frames_to_send(window: Window, truth: bytes) -> list[bytes]:
    """The broadcast for a closed window: each segment's list, then its frames, in order;
    ``truth`` (the encoded list of ``window.members``) leads the last segment."""
    out: list[bytes] = []
    segment: list[bytes] = []
    for entry in window.held:
        kind, body = entry[:1], entry[1:]
        if kind == LIST:
            out.append(body)
            out.extend(segment)
            segment = []
        else:
            segment.append(body)
    if segment:
        out.append(truth)
        out.extend(segment)
    return out


class MemberWindows:
    """The Redis side of the windows; the handler decides what to publish."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, interval_ms: int) -> None:
        self.redis, self.keys, self.interval_ms = redis, keys, interval_ms
        self._hold = redis.register_script(_HOLD)
        self._take = redis.register_script(_TAKE)

    async def hold(
        self, channel_id: int, frame: bytes, username: str, before: bytes, now_ms: int
    ) -> int | None:
        """Record a join or leave of ``username``.

        Returns None if the channel was quiet: the caller sends the list and ``frame`` now, and
        the interval starts. Otherwise ``frame`` is held and the window's due time (Unix ms) is
        returned. ``before`` is the encoded list as it stood just before this change, kept only
        if the window already names ``username``.
        """
        reply = await self._hold(
            keys=self._window_keys(channel_id),
            args=[
                *self._pace(now_ms),
                FRAME + frame,
                username,
                channel_id,
                LIST + before,
                max(KEEP_MS, 10 * self.interval_ms),
            ],
        )
        due = int(reply)
        return None if due < 0 else due

    async def take(self, channel_id: int, now_ms: int) -> Window | None:
        """Close the channel's window (None if nothing is held): its frames and the members,
        read in one step, and a new interval starts."""
        reply = await self._take(
            keys=[*self._window_keys(channel_id), self.keys.channel_conns(channel_id)],
            args=[*self._pace(now_ms), channel_id],
        )
        if not reply:
            return None
        count = int(reply[0])
        return Window(held=list(reply[1 : 1 + count]), members=member_list(reply[1 + count :]))

    async def overdue(self, before_ms: int, limit: int) -> list[int]:
        """Channels whose window was due before ``before_ms``, oldest first."""
        found = await self.redis.zrangebyscore(
            self.keys.members_due, "-inf", before_ms, start=0, num=limit
        )
        return [int(cast(bytes, c)) for c in found]

    def _pace(self, now_ms: int) -> list[int]:
        return [self.interval_ms, now_ms, BURST * self.interval_ms]

    def _window_keys(self, channel_id: int) -> list[str]:
        return [
            self.keys.members_held(channel_id),
            self.keys.members_users(channel_id),
            self.keys.members_pace(channel_id),
            self.keys.members_due,
        ]
