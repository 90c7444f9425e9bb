"""presence-service's command handler and the reaper of dead gateways.

Join: (1) the joiner already got its history from chat-service; (2) every member receives
``channel_members``; (3) every member receives ``channel_join``. A user opening another
connection in a channel it is already in changes nobody's view, so only that connection is told.
Leave: the remaining members receive ``channel_members`` then ``channel_leave``, once, when the
user's last connection in the channel is gone.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from justchat import events, wire
from justchat.events import AnyPresenceCmd, Direct, PresenceJoin, PresenceLeave, PresenceTyping
from justchat.keys import Keys, partition_of
from justchat.metrics import Registry
from justchat.settings import Settings
from justchat.streams import TRANSIENT
from presence_service.store import PresenceStore

log = logging.getLogger(__name__)


def _frame(frame_type: type[wire.ServerFrame], payload: object) -> bytes:
    frame = frame_type(timestamp=wire.utc_timestamp(), id=wire.new_id(), payload=payload)  # type: ignore[call-arg]
    return wire.encode_frame(frame)


class PresenceHandler:
    def __init__(
        self, store: PresenceStore, redis: aioredis.Redis, keys: Keys, registry: Registry
    ) -> None:
        self.store, self.redis, self.keys = store, redis, keys
        self.announced = registry.counter(
            "presence_announcements",
            "join/leave broadcasts",
        )

    async def handle(self, commands: list[AnyPresenceCmd]) -> None:
        for command in commands:
            match command:
                case PresenceJoin():
                    await self.join(command)
                case PresenceLeave():
                    await self.leave(command)
                case PresenceTyping(channel_id=channel_id, user=user):
                    await self.broadcast(
                        channel_id,
                        _frame(
                            wire.TypingFrame, wire.ChannelUserOut(channel_id=channel_id, user=user)
                        ),
                    )

    async def fail(self, command: AnyPresenceCmd, error: Exception) -> None:
        """Presence commands have no one waiting for an answer; the dead letter is the record."""

    async def join(self, cmd: PresenceJoin) -> None:
        result = await self.store.join(cmd.channel_id, cmd.origin, cmd.user)
        members = _frame(
            wire.MembersFrame, wire.MembersOut(channel_id=cmd.channel_id, members=result.members)
        )
        joined = _frame(
            wire.JoinFrame, wire.ChannelUserOut(channel_id=cmd.channel_id, user=cmd.user)
        )
        await self.broadcast(cmd.channel_id, members)
        if result.already_present:
            event = Direct(conn=cmd.origin.conn, frames=[joined])
            await self.redis.publish(
                self.keys.gateway_inbox(cmd.origin.gateway), events.encode(event)
            )
        else:
            self.announced.inc(kind="join")
            await self.broadcast(cmd.channel_id, joined)

    async def leave(self, cmd: PresenceLeave) -> None:
        result = await self.store.leave(cmd.channel_id, cmd.origin)
        if result is None or result.still_present:
            return
        self.announced.inc(kind="leave")
        await self.broadcast(
            cmd.channel_id,
            _frame(
                wire.MembersFrame,
                wire.MembersOut(channel_id=cmd.channel_id, members=result.members),
            ),
        )
        await self.broadcast(
            cmd.channel_id,
            _frame(
                wire.LeaveFrame, wire.ChannelUserOut(channel_id=cmd.channel_id, user=result.user)
            ),
        )

    async def broadcast(self, channel_id: int, frame: bytes) -> None:
        await self.redis.publish(
            self.keys.channel_topic(channel_id),
            events.encode(events.ChannelEvent(seq=0, frame=frame)),
        )


async def reap_dead_gateways(
    store: PresenceStore, redis: aioredis.Redis, keys: Keys, settings: Settings, registry: Registry
) -> None:
    """Turn a dead gateway's connections into ordinary leave commands, in their partitions.

    Going through the partition streams keeps every channel's presence changes in one order, and
    leaves are idempotent, so two replicas reaping the same gateway announce each leave once.
    """
    reaped = registry.counter("gateways_reaped", "gateways declared dead")
    interval = min(1.0, settings.heartbeat_s)
    while True:
        try:
            for gateway in await store.dead_gateways():
                pairs = await store.gateway_connections(gateway)
                log.warning(
                    "gateway %s missed its heartbeats; removing %s memberships", gateway, len(pairs)
                )
                async with redis.pipeline(transaction=False) as pipe:
                    for channel_id, conn in pairs:
                        leave = PresenceLeave(
                            channel_id=channel_id, origin=events.Origin(gateway=gateway, conn=conn)
                        )
                        pipe.xadd(
                            keys.presence_stream(partition_of(channel_id, settings.partitions)),
                            {"c": events.encode(leave)},
                        )
                    await pipe.execute()
                await store.forget_gateway(gateway)
                reaped.inc()
        except TRANSIENT as exc:
            log.warning("reaper round failed: %r", exc)
        await asyncio.sleep(interval)
