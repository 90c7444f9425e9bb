"""Everything the gateway writes to Redis: commands on streams, checked sends, guest numbers.

All of it goes through the ``CommandBatcher`` (one pipeline per tick for all connections). A
chat message costs one command: its rate limit, its mute check and its XADD run in one script.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from msgspec import Struct

from gateway.batcher import CommandBatcher
from justchat import events, wire
from justchat.errors import ProtocolError
from justchat.keys import Keys, partition_of, partition_of_user
from justchat.settings import Settings

GUEST_WAIT_S: Final = 5.0

# Mute check, then (rate > 0) the user's token bucket, then XADD; Redis's clock, so gateways
# with skewed clocks agree. Returns 0 (added), -1 (muted) or the ms until the next token.
# KEYS: rate bucket, channel mutes, stream. ARGV: rate/s, burst, username, maxlen, payload.
_CHECKED_XADD: Final = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local mute = tonumber(redis.call('HGET', KEYS[2], ARGV[3]))
if mute and (mute == 0 or mute > now_ms) then return -1 end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
if rate > 0 then
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now_ms
  tokens = math.min(burst, tokens + (now_ms - at) * rate / 1000)
  if tokens < 1 then return math.ceil((1 - tokens) * 1000 / rate) end
  redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'at', now_ms)
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'c', ARGV[5])
return 0
"""

# INCR only once chat-service has seeded the counter from PostgreSQL: a Redis that lost its data
# must not hand out a guest name that is already stored.
_NEXT_GUEST: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCR', KEYS[1])
"""


class Unavailable(Exception):
    """Redis could not take a command."""


class RateLimited(ProtocolError):
    def __init__(self, retry_after_ms: int) -> None:
        super().__init__(wire.ERR_TOO_FAST)
        self.retry_after_ms = retry_after_ms


class CommandWriter:
    def __init__(self, batcher: CommandBatcher, keys: Keys, settings: Settings) -> None:
        self.batcher, self.keys, self.settings = batcher, keys, settings
        self._checked_xadd = batcher.script(_CHECKED_XADD)
        self._next_guest = batcher.script(_NEXT_GUEST)

    async def chat(self, command: events.ChatCommand) -> None:
        """A command for chat-service, on its channel's partition (a guest's: its name's)."""
        if isinstance(command, events.GuestCmd):
            partition = partition_of_user(command.username, self.settings.partitions)
        else:
            partition = partition_of(command.channel_id, self.settings.partitions)
        await self._xadd(self.keys.cmd_stream(partition), command)

    async def presence(self, command: events.AnyPresenceCmd) -> None:
        if isinstance(command, events.PresenceOnline):
            # Keyed by connection: its online and offline land in one partition, in order.
            partition = partition_of_user(command.origin.conn, self.settings.partitions)
        else:
            partition = partition_of(command.channel_id, self.settings.partitions)
        await self._xadd(self.keys.presence_stream(partition), command)

    async def send(self, username: str, command: events.SendCmd) -> None:
        """A chat message, unless its sender is muted there (``ProtocolError``) or over its
        rate (``RateLimited``)."""
        stream = self.keys.cmd_stream(partition_of(command.channel_id, self.settings.partitions))
        await self._checked(username, command.channel_id, stream, command, rate_limited=True)

    async def typing(self, username: str, command: events.PresenceTyping) -> None:
        """A typing notice, unless its sender is muted there (``ProtocolError``)."""
        partition = partition_of(command.channel_id, self.settings.partitions)
        stream = self.keys.presence_stream(partition)
        await self._checked(username, command.channel_id, stream, command, rate_limited=False)

    async def channel_exists(self, channel_id: int) -> bool:
        return bool(await self.batcher.call("SISMEMBER", self.keys.channels, str(channel_id)))

    async def next_guest(self) -> int:
        """The next guest number; waits (up to ``GUEST_WAIT_S``) for chat-service to seed it."""
        deadline = time.monotonic() + GUEST_WAIT_S
        while (
            number := await self.batcher.evalsha(self._next_guest, [self.keys.guest_seq], [])
        ) is None:
            if time.monotonic() > deadline:
                raise Unavailable("guest counter not seeded")
            await asyncio.sleep(0.1)
        return int(number)

    async def _checked(
        self, username: str, channel_id: int, stream: str, command: Struct, *, rate_limited: bool
    ) -> None:
        s = self.settings
        reply = await self.batcher.evalsha(
            self._checked_xadd,
            [self.keys.send_rate(username), self.keys.channel_mutes(channel_id), stream],
            [
                s.send_rate_per_s if rate_limited else 0,
                s.send_burst,
                username,
                events.COMMAND_STREAM_MAXLEN,
                events.encode(command),
            ],
        )
        if reply == -1:
            raise ProtocolError(wire.ERR_MUTED)
        if reply > 0:
            raise RateLimited(int(reply))

    async def _xadd(self, stream: str, command: Struct) -> None:
        await self.batcher.call(
            "XADD",
            stream,
            "MAXLEN",
            "~",
            events.COMMAND_STREAM_MAXLEN,
            "*",
            "c",
            events.encode(command),
        )
