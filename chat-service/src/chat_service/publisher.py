"""Publishing a stored batch: the resume window, the channel topics, the end of typing.

A batch costs one pipeline round trip whatever its size: one script call per channel appends the
channel's messages to its recent window (entry id = seq), publishes their events in seq order and
clears their senders' typing markers. Each call touches one channel's keys only (they share a hash
tag), so the scheme holds under Redis Cluster. The script is sent once (EVALSHA) and again after
NOSCRIPT, i.e. after Redis restarted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from chat_service import frames
from chat_service.store import StoredMessage
from justchat import events
from justchat.keys import Keys

# KEYS[1]: the channel's recent window; KEYS[2..]: typing markers to clear.
# ARGV[1]: the channel's topic; ARGV[2]: the window's length (0: none); then per message its
# seq, frame (kept in the window) and event (published).
# A replayed message's XADD fails (its id is not above the window's top): it is there already.
_PUBLISH: Final = """
local window = tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
    if window > 0 then
        local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', window, ARGV[i] .. '-1',
                                  'frame', ARGV[i + 1])
        if type(added) == 'table' and added.err
                and not string.find(added.err, 'equal or smaller', 1, true) then
            return added
        end
    end
    redis.call('PUBLISH', ARGV[1], ARGV[i + 2])
end
if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end
return (#ARGV - 2) / 3
"""
_PUBLISH_SHA: Final = hashlib.sha1(_PUBLISH.encode()).hexdigest()  # the id Redis gives it

Call = tuple[str | bytes | int, ...]


class Publisher:
    def __init__(self, redis: aioredis.Redis, keys: Keys, recent_window: int) -> None:
        self.redis, self.keys, self.recent_window = redis, keys, recent_window

    async def publish(
        self, messages: Sequence[StoredMessage], extra: Sequence[tuple[str, bytes]] = ()
    ) -> int:
        """Publish each distinct message once, in the given order per channel, then ``extra``
        (topic, payload) pairs, in one round trip; return how many messages were published."""
        by_channel: dict[int, list[StoredMessage]] = {}
        seen = set()
        for m in messages:
            if m.id not in seen:
                seen.add(m.id)
                by_channel.setdefault(m.channel_id, []).append(m)
        calls = [self._call(channel_id, batch) for channel_id, batch in by_channel.items()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command("EVALSHA", _PUBLISH_SHA, *call)
            for topic, payload in extra:
                pipe.publish(topic, payload)
            replies = await pipe.execute(raise_on_error=False)
        unknown = [c for c, r in zip(calls, replies, strict=False) if isinstance(r, NoScriptError)]
        if unknown:
            await self._load_and_retry(unknown)
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, NoScriptError):
                raise reply
        return len(seen)

    def _call(self, channel_id: int, batch: list[StoredMessage]) -> Call:
        typing = sorted({self.keys.channel_typing(channel_id, m.sender_username) for m in batch})
        args: list[str | bytes | int] = [
            self.keys.channel_topic(channel_id),
            self.recent_window,
        ]
        for m in batch:
            frame = frames.message_frame(m)
            args += [m.seq, frame, events.encode(events.ChannelEvent(seq=m.seq, frame=frame))]
        return (1 + len(typing), self.keys.channel_recent(channel_id), *typing, *args)

    async def _load_and_retry(self, calls: list[Call]) -> None:
        """Redis lost its scripts (it restarted): send the script, then the failed calls again.
        They did nothing the first time, so running them now publishes each message once."""
        await self.redis.script_load(_PUBLISH)
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.execute_command("EVALSHA", _PUBLISH_SHA, *call)
            await pipe.execute()
