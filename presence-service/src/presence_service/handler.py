"""presence-service's command handler and the reaper of dead gateways.

Join: (1) the joiner already got its history from chat-service; (2) every member receives
``channel_members``; (3) every member receives ``channel_join``. Leave (a kick, a ban and a dead
gateway's expiry come as leaves too): the remaining members receive ``channel_members`` then
``channel_leave``, once, when the user's last connection in the channel is gone. A user opening
another connection in a channel it is already in changes nobody's view, so only that connection
is told.

Busy channels: after a burst of three, ``channel_members`` goes out once per
``JUSTCHAT_MEMBERS_INTERVAL_MS`` per channel, and the join and leave frames wait for it
(``presence_service.windows``): delayed, never reordered, and the joiner receives its list once.
A join storm of N users thus costs N join frames per member plus one list per interval.

Within one replica a channel's changes and its window's sending take one lock, so the list read
when a window closes reflects exactly the frames held. A window whose replica died is sent by any
replica once it is overdue by a whole interval (``sweep``).

Typing: broadcast at most once per ``JUSTCHAT_TYPING_INTERVAL_MS`` per user and channel (a Redis
key with that TTL); chat-service deletes the key when the user sends a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import redis.asyncio as aioredis

from justchat import events, wire
from justchat.aio import cancel_and_wait
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
from presence_service.store import PresenceStore
from presence_service.windows import LIST, MemberWindows, frames_to_send

log = logging.getLogger(__name__)

T = TypeVar("T")

ORDER_STRIPES: Final = 64  # channel locks, shared by channel id modulo: bounded memory
OVERDUE_BATCH: Final = 100
RETRY_MAX_S: Final = 5.0


def members_frame(channel_id: int, members: list[wire.UserFrom]) -> bytes:
    return wire.fresh_frame(
        wire.MembersFrame, wire.MembersOut(channel_id=channel_id, members=members)
    )


def now_ms() -> int:
    return int(time.time() * 1000)


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
        self.interval_ms = settings.members_interval_ms
        self.typing_interval_ms = settings.typing_interval_ms
        self.windows = MemberWindows(redis, keys, self.interval_ms)
        self._stripes = [asyncio.Lock() for _ in range(ORDER_STRIPES)]
        self._timers: dict[int, asyncio.Task[None]] = {}  # channel -> its window's local timer
        self.announced = registry.counter("presence_announcements", "join/leave broadcasts")
        self.members_sent = registry.counter(
            "presence_members_broadcasts", "channel_members broadcasts (after coalescing)"
        )
        self.held = registry.counter(
            "presence_frames_held", "join/leave frames held until their window's member list"
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
        """Stop the local timers; their windows stay in Redis for whichever replica runs next."""
        await cancel_and_wait(list(self._timers.values()))

    async def join(self, cmd: PresenceJoin) -> None:
        joined = wire.fresh_frame(
            wire.JoinFrame, wire.ChannelUserOut(channel_id=cmd.channel_id, user=cmd.user)
        )
        async with self._order(cmd.channel_id):
            result = await self.store.join(cmd.channel_id, cmd.origin, cmd.user)
            if result.again:  # re-announced after an outage: just refresh this connection's view
                await self.direct(cmd.origin, [members_frame(cmd.channel_id, result.members)])
                return
            if result.already_present:
                members = members_frame(cmd.channel_id, result.members)
                await self.direct(cmd.origin, [members, joined])
                return
            self.announced.inc(kind="join")
            await self._announce(
                cmd.channel_id, joined, cmd.user, result.members, result.before(cmd.user)
            )

    async def leave(self, cmd: PresenceLeave) -> None:
        async with self._order(cmd.channel_id):
            result = await self.store.leave(cmd.channel_id, cmd.origin)
            if result is None or result.still_present:
                return
            self.announced.inc(kind="leave")
            left = wire.fresh_frame(
                wire.LeaveFrame, wire.ChannelUserOut(channel_id=cmd.channel_id, user=result.user)
            )
            await self._announce(cmd.channel_id, left, result.user, result.members, result.before)

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

    async def _announce(
        self,
        channel_id: int,
        frame: bytes,
        user: wire.UserFrom,
        members: list[wire.UserFrom],
        before: list[wire.UserFrom],
    ) -> None:
        """The list and then ``frame``: now if the channel is quiet, else at its window's end.
        Runs under the channel's lock."""
        if self.interval_ms > 0:
            due = await self.windows.hold(
                channel_id, frame, user.username, members_frame(channel_id, before), now_ms()
            )
            if due is not None:
                self.held.inc()
                self._flush_at(channel_id, due)
                return
        self.members_sent.inc()
        await self.broadcast(channel_id, members_frame(channel_id, members), frame)

    def _flush_at(self, channel_id: int, due_ms: int) -> None:
        if channel_id in self._timers:
            return
        timer = asyncio.create_task(
            self._flush_later(channel_id, due_ms), name=f"members-window-{channel_id}"
        )
        self._timers[channel_id] = timer

        def forget(task: asyncio.Task[None]) -> None:
            if self._timers.get(channel_id) is task:
                del self._timers[channel_id]

        timer.add_done_callback(forget)

    async def _flush_later(self, channel_id: int, due_ms: int) -> None:
        await asyncio.sleep(max(0.0, (due_ms - now_ms()) / 1000))
        await self._flush_logged(channel_id)

    async def _flush_logged(self, channel_id: int) -> None:
        try:
            await self.flush(channel_id)
        except Exception:  # bad data in Redis must not stop the other channels' windows
            log.exception("members window of %s could not be sent", channel_id)

    async def flush(self, channel_id: int) -> None:
        """Close the channel's window, if one is held: its list(s), then its frames, in order."""
        async with self._order(channel_id):
            # From here on, a change schedules a timer for the next window.
            if self._timers.get(channel_id) is asyncio.current_task():
                del self._timers[channel_id]
            window = await self._retrying(
                f"members window of {channel_id}", lambda: self.windows.take(channel_id, now_ms())
            )
            if window is None:
                return
            frames = frames_to_send(window, members_frame(channel_id, window.members))
            self.members_sent.inc(1 + sum(entry[:1] == LIST for entry in window.held))
            await self._retrying(
                f"members window of {channel_id}", lambda: self.broadcast(channel_id, *frames)
            )

    async def sweep(self) -> None:
        """Send the windows overdue by a whole interval: the replica that held them died or
        gave its partition away (their own timers send them at the due time)."""
        if self.interval_ms <= 0:
            return
        while True:
            await asyncio.sleep(self.interval_ms / 1000)
            try:
                overdue = await self.windows.overdue(now_ms() - self.interval_ms, OVERDUE_BATCH)
            except TRANSIENT as exc:
                log.warning("members window sweep failed: %r", exc)
                continue
            for channel_id in overdue:
                if channel_id not in self._timers:
                    log.info("sending the overdue members window of %s", channel_id)
                    await self._flush_logged(channel_id)

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        backoff = 0.1
        while True:
            try:
                return await attempt()
            except TRANSIENT as exc:
                log.warning("%s failed: %r; retrying in %.1fs", what, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)

    def _order(self, channel_id: int) -> asyncio.Lock:
        return self._stripes[channel_id % ORDER_STRIPES]

    async def broadcast(self, channel_id: int, *frames: bytes) -> None:
        """Publish ``frames`` to the channel's members, in this order and all at once: a
        gateway subscribing meanwhile gets all of them or none (never a join without its list)."""
        topic = self.keys.channel_topic(channel_id)
        async with self.redis.pipeline(transaction=len(frames) > 1) as pipe:
            for frame in frames:
                pipe.publish(topic, events.encode(events.ChannelEvent(seq=0, frame=frame)))
            await pipe.execute()

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
