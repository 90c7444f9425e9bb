"""chat-service's command handler: commands in, stored rows and published events out.

The stream mechanics (leases, pending take-over, XACK after commit, dead letters) live in
``justchat.streams``; this module only says what each command does. Consecutive sends are
stored together (``ChatStore.store_messages``), then published in seq order in one round trip
(``chat_service.publisher``). A replayed batch finds its rows already stored and publishes the
same messages with the same seq again, which gateways drop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import Any, Final, cast

import msgspec
import redis.asyncio as aioredis

from chat_service import frames
from chat_service.moderation import Moderation, Refused, applied
from chat_service.publisher import Publisher
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
from justchat.streams import TRANSIENT

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
        self.publisher = Publisher(redis, keys, settings.recent_window)
        self.stored = registry.counter("messages_stored", "messages written to PostgreSQL")
        self.published = registry.counter("messages_published", "messages published to channels")
        self.resumes = registry.counter("resumes", "channel_join with since_seq, by source")

    async def handle(self, commands: list[ChatCommand]) -> None:
        """Apply a batch in order. Consecutive sends are stored and published together;
        consecutive joins and history pages (reads, each answered to its own connection) run
        concurrently; everything else runs one at a time."""
        run: list[ChatCommand] = []
        for command in commands:
            if run and _kind(command) != _kind(run[0]):
                await self._apply(run)
                run = []
            run.append(command)
        if run:
            await self._apply(run)

    async def _apply(self, run: list[ChatCommand]) -> None:
        if isinstance(run[0], SendCmd):
            await self.send(cast(list[SendCmd], run))
        elif _kind(run[0]) == _READ:
            fresh = [c for c in run if isinstance(c, JoinCmd) and c.since_seq is None]
            calls = [
                self._one(c) for c in run if not (isinstance(c, JoinCmd) and c.since_seq is None)
            ]
            if fresh:
                calls.append(self.join_fresh(fresh))
            await _together(calls)
        else:
            for command in run:
                await self._one(command)

    async def _one(self, command: ChatCommand) -> None:
        match command:
            case SendCmd():
                await self.send([command])
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
        # A repeated client_msg_id is answered with the original message, to the sender alone.
        answers = [
            self._direct_event(cmd.origin, [frames.message_frame(msg)])
            for cmd, msg in zip(sends, stored, strict=True)
            if msg.replayed and str(msg.id) != cmd.msg_id
        ]
        self.published.inc(await self.publisher.publish(stored, answers))

    async def moderate(self, cmd: ModerateCmd) -> None:
        # A refusal answers whoever sent the command: the moderator's connection (an error
        # frame) or the REST caller (a reply); either way the command is done, not failed.
        try:
            answer = applied(await self.moderation.apply(cmd))
        except Refused as refused:
            log.info("%s may not %s %s: %s", cmd.actor.username, cmd.action, cmd.target, refused)
            if cmd.origin is not None:
                refusal = wire.error_frame(refused.wire_text, channel_id=cmd.channel_id)
                await self.direct(cmd.origin, [refusal])
            answer = refused.reply()
        if cmd.request_id is not None:
            await self.moderation.reply(cmd.request_id, answer)

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

    async def join_fresh(self, cmds: list[JoinCmd]) -> None:
        """Joins without ``since_seq``, together: each channel's history is read and encoded
        once, and all the answers (and the ``channels`` set) go out in one pipeline."""
        pairs = sorted({(c.channel_id, c.actor.username) for c in cmds})
        flags = await asyncio.gather(*(self.moderation.store.is_banned(*p) for p in pairs))
        banned = {p for p, flag in zip(pairs, flags, strict=True) if flag}
        channel_ids = sorted(
            {c.channel_id for c in cmds if (c.channel_id, c.actor.username) not in banned}
        )
        views: dict[int, tuple[list[StoredMessage], int]] = {}
        if channel_ids:
            await self.store.ensure_channels(channel_ids)
            views = await self.store.last_messages_of(channel_ids, self.settings.history_limit)
        history = {c: [frames.message_frame(m) for m in view[0]] for c, view in views.items()}
        async with self.redis.pipeline(transaction=False) as pipe:
            if channel_ids:
                pipe.sadd(self.keys.channels, *channel_ids)
            for cmd in cmds:
                if (cmd.channel_id, cmd.actor.username) in banned:
                    banned_frame = wire.error_frame(wire.ERR_BANNED, channel_id=cmd.channel_id)
                    out, ok, last_seq = [banned_frame], False, 0
                else:
                    out, ok, last_seq = history[cmd.channel_id], True, views[cmd.channel_id][1]
                pipe.publish(
                    *self._direct_event(
                        cmd.origin, out, request_id=cmd.request_id, ok=ok, last_seq=last_seq
                    )
                )
            await pipe.execute()

    async def join(self, cmd: JoinCmd) -> None:
        if cmd.since_seq is None:
            await self.join_fresh([cmd])
            return
        if await self.moderation.store.is_banned(cmd.channel_id, cmd.actor.username):
            banned = wire.error_frame(wire.ERR_BANNED, channel_id=cmd.channel_id)
            await self.direct(cmd.origin, [banned], request_id=cmd.request_id, ok=False)
            return
        await self.store.ensure_channel(cmd.channel_id)
        await self.redis.sadd(self.keys.channels, cmd.channel_id)
        if (window := await self._from_window(cmd.channel_id, cmd.since_seq)) is not None:
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
        await self.redis.publish(
            *self._direct_event(origin, out, request_id=request_id, ok=ok, last_seq=last_seq)
        )

    def _direct_event(
        self,
        origin: Origin,
        out: list[bytes],
        *,
        request_id: str | None = None,
        ok: bool = True,
        last_seq: int = 0,
    ) -> tuple[str, bytes]:
        """The inbox topic and payload that carry ``out`` to one connection."""
        event = Direct(
            conn=origin.conn, frames=out, request_id=request_id, ok=ok, last_seq=last_seq
        )
        return self.keys.gateway_inbox(origin.gateway), events.encode(event)


_SEND, _READ, _OTHER = "send", "read", "other"


def _kind(command: ChatCommand) -> str:
    if isinstance(command, SendCmd):
        return _SEND
    if isinstance(command, JoinCmd | HistoryCmd):
        return _READ
    return _OTHER


async def _together(calls: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``calls`` concurrently, all to completion; then raise the first failure, an outage
    (``TRANSIENT``, so the batch is retried) before any other error."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    for error in errors:
        if isinstance(error, TRANSIENT) or not isinstance(error, Exception):
            raise error
    if errors:
        raise errors[0]
