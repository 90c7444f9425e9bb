"""chat-service's command handler: commands in, stored rows and published events out.

The stream mechanics (leases, pending take-over, XACK after commit, dead letters) live in
``justchat.streams``; this module only says what each command does. Consecutive sends are
stored in one transaction, then published in seq order. A replayed batch finds its rows already
stored and publishes the same messages with the same seq again, which gateways drop.
"""

from __future__ import annotations

import logging
import uuid
from typing import Final

import msgspec
import redis.asyncio as aioredis

from chat_service import frames
from chat_service.moderation import Moderation, Refused
from chat_service.store import ChatStore, StoredMessage
from justchat import events, wire
from justchat.events import (
    ChatCommand,
    Direct,
    GuestCmd,
    HistoryCmd,
    JoinCmd,
    ModerateCmd,
    Origin,
    ReactCmd,
    SendCmd,
    SyncCmd,
)
from justchat.keys import Keys
from justchat.metrics import Registry
from justchat.settings import Settings

log = logging.getLogger(__name__)

MAX_RESUME: Final = 1000


class CommandProcessor:
    def __init__(
        self,
        store: ChatStore,
        moderation: Moderation,
        redis: aioredis.Redis,
        keys: Keys,
        settings: Settings,
        registry: Registry,
    ) -> None:
        self.store, self.redis, self.keys, self.settings = store, redis, keys, settings
        self.moderation = moderation
        self.stored = registry.counter("messages_stored", "messages written to PostgreSQL")
        self.published = registry.counter("messages_published", "messages published to channels")
        self.resumes = registry.counter("resumes", "channel_join with since_seq, by source")

    async def handle(self, commands: list[ChatCommand]) -> None:
        sends: list[SendCmd] = []
        for command in commands:
            if isinstance(command, SendCmd):
                sends.append(command)
                continue
            if sends:
                await self.send(sends)
                sends = []
            match command:
                case JoinCmd():
                    await self.join(command)
                case GuestCmd():
                    await self.store.create_guest(command.username)
                case SyncCmd():
                    await self.sync(command)
                case ModerateCmd():
                    await self.moderate(command)
                case ReactCmd():
                    await self.react(command)
                case HistoryCmd():
                    await self.history(command)
        if sends:
            await self.send(sends)

    async def fail(self, command: ChatCommand, error: Exception) -> None:
        match command:
            case SendCmd(origin=origin):
                failed = wire.error_frame(
                    wire.ERR_SEND_FAILED,
                    channel_id=command.channel_id,
                    client_msg_id=command.client_msg_id,
                )
                await self.direct(origin, [failed])
            case JoinCmd(origin=origin, request_id=request_id):
                await self.direct(
                    origin,
                    [wire.error_frame(wire.ERR_JOIN_FAILED, channel_id=command.channel_id)],
                    request_id=request_id,
                    ok=False,
                )

    async def send(self, sends: list[SendCmd]) -> None:
        stored = await self.store.store_messages(sends)
        self.stored.inc(sum(1 for m in stored if not m.replayed))
        await self.publish(stored)
        # A repeated client_msg_id is answered with the original message, to the sender alone.
        for cmd, msg in zip(sends, stored, strict=True):
            if msg.replayed and str(msg.id) != cmd.msg_id:
                await self.direct(cmd.origin, [frames.message_frame(msg)])

    async def publish(self, messages: list[StoredMessage]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in messages:
                frame = frames.message_frame(m)
                if self.settings.recent_window:
                    # The entry id is the seq, so a resume reads exactly the entries after it.
                    # A replay's XADD fails (the id is not above the top): it is there already.
                    pipe.xadd(
                        self.keys.channel_recent(m.channel_id),
                        {"frame": frame},
                        id=f"{m.seq}-1",
                        maxlen=self.settings.recent_window,
                        approximate=True,
                    )
                pipe.publish(
                    self.keys.channel_topic(m.channel_id),
                    events.encode(events.ChannelEvent(seq=m.seq, frame=frame)),
                )
                # A message ends its sender's typing: the next keystroke is announced at once.
                pipe.delete(self.keys.channel_typing(m.channel_id, m.sender_username))
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and "equal or smaller" not in str(reply):
                raise reply
        self.published.inc(len(messages))

    async def moderate(self, cmd: ModerateCmd) -> None:
        try:
            await self.moderation.apply(cmd)
        except Refused as refused:
            log.info("%s may not %s %s: %s", cmd.actor.username, cmd.action, cmd.target, refused)
            if cmd.origin is not None:
                refusal = wire.error_frame(str(refused), channel_id=cmd.channel_id)
                await self.direct(cmd.origin, [refusal])

    async def react(self, cmd: ReactCmd) -> None:
        count = await self.store.react(
            message_id=uuid.UUID(cmd.message_id),
            channel_id=cmd.channel_id,
            username=cmd.actor.username,
            emote=cmd.emote,
            add=cmd.add,
        )
        if count is None:
            missing = wire.error_frame(wire.ERR_NO_MESSAGE, channel_id=cmd.channel_id)
            await self.direct(cmd.origin, [missing])
            return
        frame_type = wire.ReactAddFrame if cmd.add else wire.ReactRemoveFrame
        payload = wire.ReactOut(
            emote=cmd.emote,
            message_id=cmd.message_id,
            channel_id=cmd.channel_id,
            user=cmd.actor.user_from(),
            count=count,
        )
        event = events.ChannelEvent(seq=0, frame=wire.fresh_frame(frame_type, payload))
        await self.redis.publish(self.keys.channel_topic(cmd.channel_id), events.encode(event))

    async def history(self, cmd: HistoryCmd) -> None:
        messages, has_more = await self.store.page(cmd.channel_id, cmd.before_seq, cmd.limit)
        await self.direct(cmd.origin, [frames.history_frame(cmd.channel_id, messages, has_more)])

    async def join(self, cmd: JoinCmd) -> None:
        if await self.moderation.store.is_banned(cmd.channel_id, cmd.actor.username):
            banned = wire.error_frame(wire.ERR_BANNED, channel_id=cmd.channel_id)
            await self.direct(cmd.origin, [banned], request_id=cmd.request_id, ok=False)
            return
        await self.store.ensure_channel(cmd.channel_id)
        await self.redis.sadd(self.keys.channels, cmd.channel_id)
        if cmd.since_seq is None:
            history, last_seq = await self.store.last_messages(
                cmd.channel_id, self.settings.history_limit
            )
            out = [frames.message_frame(m) for m in history]
        elif (window := await self._from_window(cmd.channel_id, cmd.since_seq)) is not None:
            out, last_seq = window
            self.resumes.inc(source="window")
            out.append(frames.resumed_frame(cmd.channel_id, True, last_seq))
        else:
            history, last_seq = await self.store.messages_after(
                cmd.channel_id, cmd.since_seq, MAX_RESUME
            )
            recovered = last_seq - cmd.since_seq <= MAX_RESUME
            self.resumes.inc(source="postgres" if recovered else "too-old")
            out = [frames.message_frame(m) for m in history] if recovered else []
            out.append(frames.resumed_frame(cmd.channel_id, recovered, last_seq))
        await self.direct(cmd.origin, out, request_id=cmd.request_id, last_seq=last_seq)

    async def _from_window(self, channel_id: int, since_seq: int) -> tuple[list[bytes], int] | None:
        """The frames after ``since_seq`` and the last seq, if the recent window covers them."""
        key = self.keys.channel_recent(channel_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xrange(key, count=1)
            pipe.xrevrange(key, count=1)
            pipe.xrange(key, min=f"{since_seq + 1}-0", count=MAX_RESUME + 1)
            first, last, missed = await pipe.execute()
        if not first or int(first[0][0].split(b"-")[0]) > since_seq + 1:
            return None  # empty (Redis lost it, or nothing sent yet) or the gap starts earlier
        if len(missed) > MAX_RESUME:
            return None
        last_seq = int(last[0][0].split(b"-")[0])
        # The window keeps frames as broadcast; a replay is history, so it carries reactions.
        replay = [wire.decode_server(fields[b"frame"]) for _, fields in missed]
        summary = await self.store.reactions_for([uuid.UUID(f.id) for f in replay])
        out = [
            wire.encode_frame(
                msgspec.structs.replace(
                    f,
                    payload=msgspec.structs.replace(
                        f.payload, reactions=summary.get(uuid.UUID(f.id), [])
                    ),
                )
            )
            for f in replay
            if isinstance(f, wire.ChatSendFrame)
        ]
        return out, last_seq

    async def sync(self, cmd: SyncCmd) -> None:
        missed, _ = await self.store.messages_after(cmd.channel_id, cmd.since_seq, MAX_RESUME)
        if missed:
            catch_up = events.CatchUp(
                channel_id=cmd.channel_id,
                events=[
                    events.ChannelEvent(seq=m.seq, frame=frames.message_frame(m)) for m in missed
                ],
            )
            await self.redis.publish(self.keys.gateway_inbox(cmd.gateway), events.encode(catch_up))

    async def direct(
        self,
        origin: Origin,
        out: list[bytes],
        *,
        request_id: str | None = None,
        ok: bool = True,
        last_seq: int = 0,
    ) -> None:
        event = Direct(
            conn=origin.conn, frames=out, request_id=request_id, ok=ok, last_seq=last_seq
        )
        await self.redis.publish(self.keys.gateway_inbox(origin.gateway), events.encode(event))
