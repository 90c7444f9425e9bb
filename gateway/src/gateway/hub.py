"""Fan-out: one Redis pub/sub connection per gateway process, shared by all its connections.

The hub subscribes to a channel's topic while at least one local connection is in the channel
(reference-counted) and to this gateway's own inbox. One reader task decodes each event once and
writes the same WebSocket frame to every local member.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.announcements import Announcements
from gateway.connection import Connection
from gateway.frames import text_frame
from gateway.protocol import corked
from justchat import events
from justchat.events import CatchUp, ChannelEvent, Direct
from justchat.keys import Keys
from justchat.metrics import Registry

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S: Final = 5.0
READ_BATCH: Final = 256  # pub/sub messages handled as one batch, at most


class Hub:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, gateway_id: str, registry: Registry
    ) -> None:
        self.redis, self.keys, self.gateway_id = redis, keys, gateway_id
        self.inbox = keys.gateway_inbox(gateway_id)
        self.pubsub = redis.pubsub()
        self.members: dict[int, dict[str, Connection]] = {}
        self.connections: dict[str, Connection] = {}
        self.replies: dict[str, asyncio.Future[Direct]] = {}
        self.announcements = Announcements()
        self._confirmations: dict[str, collections.deque[asyncio.Future[None]]] = {}
        # Per channel: a lock and how many tasks use it, so the entry goes when they are done
        # (a gateway sees channels come and go for as long as it runs).
        self._topic_locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self.on_reconnect: Callable[[], Coroutine[Any, Any, None]] | None = None
        # Kick and ban: called with the channel and the target's local connections, which have
        # already been given the frame and have stopped receiving the channel's events.
        self.on_remove: Callable[[int, list[Connection]], None] | None = None
        self.events_in = registry.counter("gateway_events_received", "pub/sub events received")
        self.reconnects = registry.counter("gateway_pubsub_reconnects", "pub/sub reconnections")
        self.frames_out = registry.counter("gateway_frames_fanned_out", "frames handed to members")

    async def start(self) -> None:
        # The reader must run before any subscription can be confirmed.
        self._reader = asyncio.create_task(self.run(), name="hub-reader")
        await self._subscribe(self.inbox)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]

    # -- membership --------------------------------------------------------------------------

    async def add_member(self, channel_id: int, conn: Connection) -> None:
        """Add a member; returns once this gateway surely receives the channel's events."""
        async with self._channel_lock(channel_id):
            local = self.members.get(channel_id)
            if local is None:
                await self._subscribe(self.keys.channel_topic(channel_id))
                local = self.members[channel_id] = {}
            local[conn.conn_id] = conn

    async def remove_member(self, channel_id: int, conn: Connection) -> None:
        async with self._channel_lock(channel_id):
            self.announcements.forget(channel_id, conn.conn_id)
            local = self.members.get(channel_id)
            if local is None or local.pop(conn.conn_id, None) is None or local:
                return
            del self.members[channel_id]
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.unsubscribe(self.keys.channel_topic(channel_id))

    @contextlib.asynccontextmanager
    async def _channel_lock(self, channel_id: int) -> AsyncIterator[None]:
        entry = self._topic_locks.get(channel_id)
        if entry is None:
            entry = self._topic_locks[channel_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._topic_locks[channel_id]

    async def _subscribe(self, topic: str) -> None:
        # Confirmations arrive in the order subscriptions were sent, so a FIFO per topic tells
        # exactly which SUBSCRIBE a confirmation answers.
        confirmed = asyncio.get_running_loop().create_future()
        waiting = self._confirmations.setdefault(topic, collections.deque())
        waiting.append(confirmed)
        try:
            await self.pubsub.subscribe(topic)
            await asyncio.wait_for(confirmed, SUBSCRIBE_TIMEOUT_S)
        except BaseException:
            # Unanswered (Redis went away): forget it, or the next confirmation would be
            # taken as its answer and leave the next subscriber waiting forever.
            with contextlib.suppress(ValueError):
                waiting.remove(confirmed)
            if not waiting:
                self._confirmations.pop(topic, None)
            raise

    def expect_reply(self, request_id: str) -> asyncio.Future[Direct]:
        future: asyncio.Future[Direct] = asyncio.get_running_loop().create_future()
        self.replies[request_id] = future
        return future

    # -- the reader ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Read pub/sub until cancelled; reconnects (and resubscribes) after Redis errors.

        Whatever was published while the connection was down is lost to pub/sub, so after a
        reconnect ``on_reconnect`` asks for each channel's missed messages (see ``CatchUp``).
        """
        backoff = 0.1
        broken = False
        while True:
            if not self.pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            batch: list[dict[str, Any]] = []
            try:
                message = await self.pubsub.get_message(timeout=1.0)
                # What has arrived already makes one batch: one write per member for all of it.
                while message is not None:
                    batch.append(message)
                    if len(batch) == READ_BATCH:
                        break
                    message = await self.pubsub.get_message(timeout=0)
                backoff = 0.1
            except (RedisError, OSError) as exc:
                self._dispatch_all(batch)
                log.warning("pub/sub read failed: %r; retrying in %.1fs", exc, backoff)
                broken = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if broken:
                broken = False
                log.info("pub/sub reconnected; catching up %s channels", len(self.members))
                self.reconnects.inc()
                if self.on_reconnect is not None:
                    self._catching_up = asyncio.create_task(self.on_reconnect())
            self._dispatch_all(batch)

    def _dispatch_all(self, batch: list[dict[str, Any]]) -> None:
        with corked():
            for message in batch:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        topic = message["channel"].decode()
        if kind == "subscribe":
            waiting = self._confirmations.get(topic)
            if waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_result(None)
                if not waiting:
                    del self._confirmations[topic]
            return
        if kind != "message":
            return
        self.events_in.inc()
        try:
            if topic == self.inbox:
                match events.inbox_decoder.decode(message["data"]):
                    case Direct() as direct:
                        self._direct(direct)
                    case CatchUp() as catch_up:
                        for missed in catch_up.events:
                            self._fan_out(catch_up.channel_id, missed)
                return
            channel_id = self.keys.channel_of_topic(topic)
            if channel_id is None:
                return
            event = events.channel_event_decoder.decode(message["data"])
        except msgspec.DecodeError:
            log.exception("undecodable event on %s", topic)
            return
        self._fan_out(channel_id, event)

    def _fan_out(self, channel_id: int, event: ChannelEvent) -> None:
        local = self.members.get(channel_id)
        if not local:
            return
        frame = text_frame(event.frame)  # one WebSocket frame, the same bytes for everyone
        for member in list(local.values()):
            member.deliver(channel_id, event.seq, frame)
        self.frames_out.inc(len(local))
        if event.seq == 0 and self.announcements.watching(channel_id):
            self.announcements.seen(event.frame)
        if event.remove is not None:
            targets = [c for c in local.values() if c.session.username == event.remove]
            for conn in targets:
                conn.session.leave(channel_id)  # nothing more from this channel reaches it
            if targets and self.on_remove is not None:
                self.on_remove(channel_id, targets)

    def _direct(self, event: Direct) -> None:
        if event.request_id is not None:
            future = self.replies.pop(event.request_id, None)
            if future is not None and not future.done():
                future.set_result(event)
            return
        member = self.connections.get(event.conn)
        if member is not None:
            member.send_frames(event.frames)
            if self.announcements:  # a join announced to the joiner alone (it had another tab)
                for frame in event.frames:
                    self.announcements.seen(frame, event.conn)
