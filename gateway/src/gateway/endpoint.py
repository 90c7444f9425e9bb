"""The ``/ws`` endpoint: handshake, then one frame at a time through ``dispatch``.

The gateway never touches PostgreSQL: tokens are checked locally, guests are numbered from a
Redis counter, and everything else becomes a command on a Redis stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import MutableMapping
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway.commands import CommandWriter, RateLimited, Unavailable
from gateway.connection import Connection, FrameSink
from gateway.frames import text_frame
from gateway.hub import Hub
from gateway.protocol import EXTENSION
from gateway.session import Session
from justchat import auth, events, wire
from justchat.errors import AuthError, ProtocolError
from justchat.events import Origin
from justchat.metrics import Registry
from justchat.settings import Settings

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S: Final = 10.0
ANNOUNCE_SLACK_S: Final = 1.0
REPLAY_READ_TIMEOUT_S: Final = 10.0  # a resuming client must read something this often

MODERATORS: Final = frozenset({"admin", "moderator"})


class Gateway:
    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        hub: Hub,
        commands: CommandWriter,
        registry: Registry,
        gateway_id: str,
    ) -> None:
        self.settings, self.redis, self.hub, self.gateway_id = settings, redis, hub, gateway_id
        self.commands = commands
        self._tasks: set[asyncio.Task[None]] = set()
        self.frames_in = registry.counter("gateway_frames_received", "client frames received")
        self.errors_out = registry.counter("gateway_errors_sent", "error frames sent to clients")

    # -- handshake -------------------------------------------------------------------------

    async def handle(self, websocket: WebSocket) -> None:
        sink: FrameSink | None = websocket.scope.get("extensions", {}).get(EXTENSION)
        if sink is None:
            log.error("/ws needs uvicorn's ws=gateway.protocol.GatewayProtocol; refusing")
            await websocket.close(1011)
            return
        await websocket.accept()
        sink.release_handshake()
        try:
            session = await asyncio.wait_for(
                self._handshake(websocket), self.settings.handshake_timeout_s
            )
        except TimeoutError:
            await _close(websocket, 1000, "Handshake timed out")
            return
        except WebSocketDisconnect:
            return
        if session is None:
            return
        conn = Connection(
            sink,
            session,
            budget=self.settings.send_buffer_bytes,
            join_frames=self.settings.send_queue_frames,
            on_cut_off=self._cut_off,
        )
        self.hub.connections[conn.conn_id] = conn
        log.debug("connection %s is %s", conn.conn_id, session.username)
        try:
            # A guest is stored and the connection announced online in one round trip.
            stored, _ = await asyncio.gather(
                self._store_guest(session), self.announce_online(conn, online=True)
            )
            if not stored:
                conn.send_frames([wire.error_frame(wire.ERR_UNAVAILABLE)])
                conn.close(1011, wire.ERR_UNAVAILABLE)
                return
            hello = wire.HelloFrame(
                timestamp=wire.utc_timestamp(),
                id=wire.new_id(),
                payload=wire.HelloOut(token=None, user=session.user),
            )
            conn.send_frames([wire.encode_frame(hello)])
            await self._serve(websocket, conn)
        finally:
            await self._disconnect(conn)

    async def _handshake(self, websocket: WebSocket) -> Session | None:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        try:
            frame = wire.decode_client(_text_of(message))
            if frame.type != "hello" or not isinstance(frame.payload, wire.HelloIn):
                raise ProtocolError(wire.ERR_INVALID_HELLO)
        except ProtocolError:
            await websocket.send_text(wire.error_frame(wire.ERR_INVALID_HELLO).decode())
            await _close(websocket, 1000, wire.ERR_INVALID_HELLO)
            return None
        conn_id = uuid.uuid4().hex
        token = frame.payload.token
        if token is not None:
            try:
                claims = auth.verify_token(token, self.settings.jwt_secret)
            except AuthError as exc:
                await _close(websocket, 1000, f"Authentication failed: {exc}")
                return None
            return Session(
                conn_id=conn_id,
                user_id=claims.user_id,
                username=claims.username,
                is_guest=False,
                role=claims.role,
            )
        try:
            username = f"Guest{await self.commands.next_guest()}"
        except (RedisError, OSError, Unavailable):
            await websocket.send_text(wire.error_frame(wire.ERR_UNAVAILABLE).decode())
            await _close(websocket, 1011, wire.ERR_UNAVAILABLE)
            return None
        return Session(
            conn_id=conn_id, user_id=None, username=username, is_guest=True, role="guest"
        )

    async def _store_guest(self, session: Session) -> bool:
        """Have chat-service store a guest (so that it shows in the dashboard); False if
        Redis could not take the command."""
        if not session.is_guest:
            return True
        try:
            await self.commands.chat(events.GuestCmd(username=session.username))
        except (RedisError, OSError) as exc:
            log.warning("guest %s not stored: %r", session.username, exc)
            return False
        return True

    # -- frames ----------------------------------------------------------------------------

    async def _serve(self, websocket: WebSocket, conn: Connection) -> None:
        while conn.closing is None:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.frames_in.inc()
            text: str | None = message.get("text")  # None if binary; errors repeat its context
            try:
                frame = wire.decode_client(_text_of(message))
                await self.dispatch(conn, frame)
            except RateLimited as exc:
                self.errors_out.inc()
                conn.send_frames(
                    [wire.reply_error(exc.detail, text, retry_after_ms=exc.retry_after_ms)]
                )
            except ProtocolError as exc:
                self._error(conn, exc.detail, text)
            except (RedisError, OSError, Unavailable) as exc:
                log.warning("redis unavailable for %s: %r", conn.conn_id, exc)
                self._error(conn, wire.ERR_UNAVAILABLE, text)
            except Exception:
                log.exception("unexpected error handling a frame from %s", conn.conn_id)
                self._error(conn, wire.ERR_UNEXPECTED, text)

    async def dispatch(self, conn: Connection, frame: wire.ClientFrame) -> None:
        session = conn.session
        match frame.payload:
            case wire.JoinIn(channel_id=channel_id, since_seq=since_seq):
                await self._join(conn, channel_id, since_seq)
            case wire.ChannelIn(channel_id=channel_id) if frame.type == "channel_leave":
                await self._check_member(session, channel_id)
                await self._leave(conn, channel_id)
            case wire.ChannelIn(channel_id=channel_id) if frame.type == "chat_typing":
                await self._check_member(session, channel_id)
                await self._announced(conn, channel_id)
                await self.commands.typing(
                    session.username,
                    events.PresenceTyping(channel_id=channel_id, user=session.user),
                )
            case wire.ChatSendIn(channel_id=channel_id, content=content):
                await self._check_member(session, channel_id)
                if len(content) > self.settings.max_message_chars:
                    raise ProtocolError(wire.ERR_TOO_LONG)
                await self._announced(conn, channel_id)
                await self.commands.send(
                    session.username,
                    events.SendCmd(
                        msg_id=str(uuid.uuid4()),
                        channel_id=channel_id,
                        actor=session.actor,
                        origin=self._origin(conn),
                        content=content,
                        client_msg_id=frame.payload.client_msg_id,
                    ),
                )
            case wire.ReactIn(channel_id=channel_id, message_id=message_id, emote=emote):
                await self._check_member(session, channel_id)  # muted users may react
                await self._announced(conn, channel_id)
                try:
                    message_id = str(uuid.UUID(message_id))
                except ValueError as exc:
                    raise ProtocolError(wire.ERR_MALFORMED) from exc
                await self.commands.chat(
                    events.ReactCmd(
                        add=frame.type == "chat_react_add",
                        channel_id=channel_id,
                        message_id=message_id,
                        emote=emote,
                        actor=session.actor,
                        origin=self._origin(conn),
                    ),
                )
            case wire.KickIn() | wire.MuteIn() | wire.UnmuteIn() as order:
                await self._check_member(session, channel_id := order.channel_id)
                if session.role not in MODERATORS:
                    raise ProtocolError(wire.ERR_NO_PERMISSION)
                await self._announced(conn, channel_id)
                await self.commands.chat(
                    events.ModerateCmd(
                        action=frame.type.removeprefix("chat_"),
                        channel_id=channel_id,
                        actor=session.actor,
                        target=order.target,
                        duration_s=getattr(order, "duration", None),
                        reason=getattr(order, "reason", None),
                        origin=self._origin(conn),
                    ),
                )
            case wire.HistoryIn(channel_id=channel_id, before_seq=before_seq, limit=limit):
                await self._check_member(session, channel_id)
                await self.commands.chat(
                    events.HistoryCmd(
                        channel_id=channel_id,
                        before_seq=before_seq,
                        limit=limit,
                        origin=self._origin(conn),
                    ),
                )
            case _:  # hello after the handshake
                raise ProtocolError(wire.ERR_INVALID_FORMAT)

    async def _check_member(self, session: Session, channel_id: int) -> None:
        if session.is_member(channel_id):
            return
        if not await self.commands.channel_exists(channel_id):
            raise ProtocolError(wire.ERR_NO_CHANNEL)
        raise ProtocolError(wire.ERR_NOT_MEMBER)

    async def _announced(self, conn: Connection, channel_id: int) -> None:
        """Just joined: wait until the channel has been told (see ``gateway.announcements``)."""
        # presence-service sends a held join within an interval, or two if its replica died.
        bound_s = 2 * self.settings.members_interval_ms / 1000 + ANNOUNCE_SLACK_S
        await self.hub.announcements.wait(channel_id, conn.conn_id, bound_s)

    async def _join(self, conn: Connection, channel_id: int, since_seq: int | None) -> None:
        session = conn.session
        session.begin_join(channel_id)
        request_id = uuid.uuid4().hex
        reply = self.hub.expect_reply(request_id)
        try:
            await self.hub.add_member(channel_id, conn)
            await self.commands.chat(
                events.JoinCmd(
                    channel_id=channel_id,
                    actor=session.actor,
                    origin=self._origin(conn),
                    request_id=request_id,
                    since_seq=since_seq,
                ),
            )
            direct = await asyncio.wait_for(reply, JOIN_TIMEOUT_S)
        except (TimeoutError, RedisError, OSError, Unavailable) as exc:
            log.warning("join of %s to %s failed: %r", conn.conn_id, channel_id, exc)
            self.hub.replies.pop(request_id, None)
            await self._forget(conn, channel_id)
            raise ProtocolError(wire.ERR_JOIN_FAILED) from exc
        if not direct.ok:
            await self._forget(conn, channel_id)
            conn.send_frames(direct.frames)
            return
        # A resume can be longer than the send budget: feed it as the client reads.
        await conn.send_paced([text_frame(f) for f in direct.frames], REPLAY_READ_TIMEOUT_S)
        session.history_sent(channel_id, direct.last_seq)
        # Sending may wait for the client; what arrives meanwhile is buffered and sent next,
        # until nothing is left: only then do live frames go straight to the client.
        while owed := session.take_buffered(channel_id):
            await conn.send_paced(owed, REPLAY_READ_TIMEOUT_S)
        session.mark_joined(channel_id)
        if conn.closing is not None:
            return
        self.hub.announcements.expect(channel_id, conn.conn_id, session.user)
        try:
            await self.commands.presence(
                events.PresenceJoin(
                    channel_id=channel_id, origin=self._origin(conn), user=session.user
                )
            )
        except BaseException:
            self.hub.announcements.forget(channel_id, conn.conn_id)
            raise

    async def _leave(self, conn: Connection, channel_id: int) -> None:
        await self._forget(conn, channel_id)
        await self.commands.presence(
            events.PresenceLeave(channel_id=channel_id, origin=self._origin(conn))
        )

    async def _forget(self, conn: Connection, channel_id: int) -> None:
        conn.session.leave(channel_id)
        await self.hub.remove_member(channel_id, conn)

    def _cut_off(self, conn: Connection) -> None:
        """A slow consumer was cut off: it leaves now, not when its socket finally closes."""
        task = asyncio.create_task(self._depart(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, conn: Connection) -> None:
        await self._depart(conn)
        conn.close(1000, "")

    async def _depart(self, conn: Connection) -> None:
        if conn.departed:
            return
        conn.departed = True
        self.hub.connections.pop(conn.conn_id, None)
        for channel_id in list(conn.session.channels):
            try:
                await self._leave(conn, channel_id)
            except (RedisError, OSError, Unavailable) as exc:
                # The heartbeat-less expiry in presence-service removes it later.
                log.warning("leave of %s from %s not recorded: %r", conn.conn_id, channel_id, exc)
        await self.announce_online(conn, online=False)

    def remove(self, channel_id: int, conns: list[Connection]) -> None:
        """Kicked or banned: take these connections out of the channel, as a leave would."""
        for conn in conns:
            task = asyncio.create_task(self._removed(conn, channel_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _removed(self, conn: Connection, channel_id: int) -> None:
        try:
            await self._leave(conn, channel_id)
        except (RedisError, OSError) as exc:
            log.warning("removal of %s from %s not recorded: %r", conn.conn_id, channel_id, exc)

    async def reconnected(self) -> None:
        """Pub/sub is back after an outage: fetch the messages and the presence it missed."""
        await self.catch_up()
        await self.reannounce()

    async def reannounce(self) -> None:
        """Announce every local connection and membership again (idempotent in presence):
        after Redis lost its data they are restored; otherwise each connection is sent the
        current member lists, which it may have missed while pub/sub was down."""
        # All at once: the batcher sends them in a few pipelines instead of a round trip each.
        await asyncio.gather(*(self._reannounce(c) for c in list(self.hub.connections.values())))

    async def _reannounce(self, conn: Connection) -> None:
        try:
            await self.announce_online(conn, online=True)
            for channel_id, channel in list(conn.session.channels.items()):
                if channel.joined:
                    await self.commands.presence(
                        events.PresenceJoin(
                            channel_id=channel_id,
                            origin=self._origin(conn),
                            user=conn.session.user,
                        )
                    )
        except (RedisError, OSError) as exc:
            log.warning("re-announcing %s failed: %r", conn.conn_id, exc)

    async def catch_up(self) -> None:
        """After pub/sub was down: ask for what each local channel may have missed since the
        oldest seq any of its local members saw; duplicates are dropped per connection."""
        requests = []
        for channel_id, local in list(self.hub.members.items()):
            seqs = [
                state.last_seq
                for conn in local.values()
                if (state := conn.session.channels.get(channel_id)) is not None and state.joined
            ]
            if seqs:
                requests.append(self._sync(channel_id, min(seqs)))
        await asyncio.gather(*requests)

    async def _sync(self, channel_id: int, since_seq: int) -> None:
        command = events.SyncCmd(
            channel_id=channel_id, gateway=self.gateway_id, since_seq=since_seq
        )
        try:
            await self.commands.chat(command)
        except (RedisError, OSError) as exc:
            log.warning("catch-up of channel %s not requested: %r", channel_id, exc)

    async def announce_online(self, conn: Connection, *, online: bool) -> None:
        command = events.PresenceOnline(
            origin=self._origin(conn), username=conn.session.username, online=online
        )
        try:
            await self.commands.presence(command)
        except (RedisError, OSError) as exc:
            # Not fatal: the heartbeat re-announces every connection after an outage.
            log.warning("online state of %s not recorded: %r", conn.conn_id, exc)

    # -- helpers ---------------------------------------------------------------------------

    def _origin(self, conn: Connection) -> Origin:
        return Origin(gateway=self.gateway_id, conn=conn.conn_id)

    def _error(self, conn: Connection, detail: str, frame_text: str | None) -> None:
        """Send ``detail`` to ``conn``, in reply to the client frame ``frame_text``."""
        self.errors_out.inc()
        conn.send_frames([wire.reply_error(detail, frame_text)])


def _text_of(message: MutableMapping[str, Any]) -> str:
    text = message.get("text")
    if text is None:  # a binary frame
        raise ProtocolError(wire.ERR_INVALID_FORMAT)
    return str(text)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.close(code, reason)
