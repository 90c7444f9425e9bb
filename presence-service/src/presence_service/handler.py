"""presence-service's command handler and the reaper of dead gateways.

Join: (1) the joiner already got its history from chat-service; (2) every member receives
``channel_members``; (3) every member receives ``channel_join``. Leave: the remaining members
receive ``channel_members`` then ``channel_leave``, once, when the user's last connection in the
channel is gone. A user opening another connection in a channel it is already in changes nobody's
view, so only that connection is told.

Busy channels: ``channel_members`` goes out at most once per ``JUSTCHAT_MEMBERS_INTERVAL_MS`` per
channel. A change inside the interval schedules one broadcast at its end, read from Redis then,
so the last list everyone receives is the true one; the joiner gets the list at once, addressed
to it alone, so its own order stays members -> join. A join storm of N users thus costs N join
frames per member, not 2N.

Typing: broadcast at most once per ``JUSTCHAT_TYPING_INTERVAL_MS`` per user and channel (a Redis
key with that TTL); chat-service deletes the key when the user sends a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Final, cast

import redis.asyncio as aioredis

from justchat import events, wire
from justchat.events import (
    AnyPresenceCmd,
    Direct,
    Origin,
    PresenceJoin,
    PresenceLeave,
    PresenceOnline,
    PresenceTyping,
)
from justchat.keys import Keys, partition_of, partition_of_user
from justchat.metrics import Registry
from justchat.settings import Settings
from justchat.streams import TRANSIENT
from presence_service.store import PresenceStore, member_list

log = logging.getLogger(__name__)

MAX_PACED_CHANNELS: Final = 100_000


def members_frame(channel_id: int, members: list[wire.UserFrom]) -> bytes:
    return wire.fresh_frame(
        wire.MembersFrame, wire.MembersOut(channel_id=channel_id, members=members)
    )


@dataclass(slots=True)
class _Pace:
    last_sent: float = -math.inf
    flush: asyncio.Task[None] | None = None


class PresenceHandler:
    def __init__(
        self,
        store: PresenceStore,
        redis: aioredis.Redis,
        keys: Keys,
        settings: Settings,
        registry: Registry,
    ) -> None:
        self.store, self.redis, self.keys = store, redis, keys
        self.members_interval = settings.members_interval_ms / 1000
        self.typing_interval_ms = settings.typing_interval_ms
        self.paces: dict[int, _Pace] = {}
        self.announced = registry.counter("presence_announcements", "join/leave broadcasts")
        self.members_sent = registry.counter(
            "presence_members_broadcasts", "channel_members broadcasts (after coalescing)"
        )
        self.typing_sent = registry.counter("presence_typing_broadcasts", "typing broadcasts")

    async def handle(self, commands: list[AnyPresenceCmd]) -> None:
        for command in commands:
            match command:
                case PresenceJoin():
                    await self.join(command)
                case PresenceLeave():
                    await self.leave(command)
                case PresenceTyping():
                    await self.typing(command)
                case PresenceOnline(origin=origin, username=username, online=online):
                    await self.store.set_online(origin, username, online)

    async def fail(self, command: AnyPresenceCmd, error: Exception) -> None:
        """Presence commands have no one waiting for an answer; the dead letter is the record."""

    async def close(self) -> None:
        for pace in self.paces.values():
            if pace.flush is not None:
                pace.flush.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pace.flush

    async def join(self, cmd: PresenceJoin) -> None:
        result = await self.store.join(cmd.channel_id, cmd.origin, cmd.user)
        members = members_frame(cmd.channel_id, result.members)
        joined = wire.fresh_frame(
            wire.JoinFrame, wire.ChannelUserOut(channel_id=cmd.channel_id, user=cmd.user)
        )
        if result.again:  # re-announced after an outage: just refresh this connection's view
            await self.direct(cmd.origin, [members])
            return
        if result.already_present:
            await self.direct(cmd.origin, [members, joined])
            return
        if not await self.members_changed(cmd.channel_id, members):
            await self.direct(cmd.origin, [members])
        self.announced.inc(kind="join")
        await self.broadcast(cmd.channel_id, joined)

    async def leave(self, cmd: PresenceLeave) -> None:
        result = await self.store.leave(cmd.channel_id, cmd.origin)
        if result is None or result.still_present:
            return
        self.announced.inc(kind="leave")
        await self.members_changed(cmd.channel_id, members_frame(cmd.channel_id, result.members))
        await self.broadcast(
            cmd.channel_id,
            wire.fresh_frame(
                wire.LeaveFrame, wire.ChannelUserOut(channel_id=cmd.channel_id, user=result.user)
            ),
        )

    async def typing(self, cmd: PresenceTyping) -> None:
        key = self.keys.channel_typing(cmd.channel_id, cmd.user.username)
        if await self.redis.set(key, 1, px=self.typing_interval_ms, nx=True):
            self.typing_sent.inc()
            await self.broadcast(
                cmd.channel_id,
                wire.fresh_frame(
                    wire.TypingFrame, wire.ChannelUserOut(channel_id=cmd.channel_id, user=cmd.user)
                ),
            )

    async def members_changed(self, channel_id: int, frame: bytes) -> bool:
        """Broadcast the new member list now if the channel's interval allows; else make sure
        one broadcast follows at the end of the interval. True if it was sent now."""
        pace = self.paces.get(channel_id)
        if pace is None:
            if len(self.paces) >= MAX_PACED_CHANNELS:
                self._forget_quiet_channels()
            pace = self.paces[channel_id] = _Pace()
        now = time.monotonic()
        if pace.flush is None and now - pace.last_sent >= self.members_interval:
            pace.last_sent = now
            self.members_sent.inc()
            await self.broadcast(channel_id, frame)
            return True
        if pace.flush is None:
            delay = pace.last_sent + self.members_interval - now
            pace.flush = asyncio.create_task(self._flush_later(channel_id, pace, delay))
        return False

    async def _flush_later(self, channel_id: int, pace: _Pace, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))
        while True:
            try:
                values = cast(
                    list[bytes], await self.redis.hvals(self.keys.channel_conns(channel_id))
                )
                pace.last_sent = time.monotonic()
                self.members_sent.inc()
                await self.broadcast(channel_id, members_frame(channel_id, member_list(values)))
                break
            except TRANSIENT as exc:
                log.warning("members flush for %s failed: %r; retrying", channel_id, exc)
                await asyncio.sleep(self.members_interval or 0.5)
        pace.flush = None

    def _forget_quiet_channels(self) -> None:
        horizon = time.monotonic() - self.members_interval
        for channel_id in [
            c for c, p in self.paces.items() if p.flush is None and p.last_sent < horizon
        ]:
            del self.paces[channel_id]

    async def broadcast(self, channel_id: int, frame: bytes) -> None:
        await self.redis.publish(
            self.keys.channel_topic(channel_id),
            events.encode(events.ChannelEvent(seq=0, frame=frame)),
        )

    async def direct(self, origin: Origin, frames: list[bytes]) -> None:
        event = Direct(conn=origin.conn, frames=frames)
        await self.redis.publish(self.keys.gateway_inbox(origin.gateway), events.encode(event))


async def reap_dead_gateways(
    store: PresenceStore,
    redis: aioredis.Redis,
    keys: Keys,
    settings: Settings,
    registry: Registry,
) -> None:
    """Turn a dead gateway's connections into ordinary leave and offline commands.

    They go through the partition streams like any other, which keeps every channel's presence
    changes in one order; and they are idempotent, so two replicas reaping the same gateway
    announce each leave once.
    """
    reaped = registry.counter("gateways_reaped", "gateways declared dead")
    interval = min(1.0, settings.heartbeat_s)
    while True:
        try:
            for gateway in await store.dead_gateways():
                pairs, online = await store.gateway_connections(gateway)
                log.warning(
                    "gateway %s missed its heartbeats; removing %s memberships", gateway, len(pairs)
                )
                async with redis.pipeline(transaction=False) as pipe:
                    for channel_id, conn in pairs:
                        leave = PresenceLeave(
                            channel_id=channel_id, origin=Origin(gateway=gateway, conn=conn)
                        )
                        stream = keys.presence_stream(partition_of(channel_id, settings.partitions))
                        pipe.xadd(stream, {"c": events.encode(leave)})
                    for conn in online:
                        offline = PresenceOnline(
                            origin=Origin(gateway=gateway, conn=conn), username="", online=False
                        )
                        # Any partition will do: the connection's entry is found by its name.
                        stream = keys.presence_stream(partition_of_user(conn, settings.partitions))
                        pipe.xadd(stream, {"c": events.encode(offline)})
                    await pipe.execute()
                await store.forget_gateway(gateway)
                reaped.inc()
        except TRANSIENT as exc:
            log.warning("reaper round failed: %r", exc)
        await asyncio.sleep(interval)
