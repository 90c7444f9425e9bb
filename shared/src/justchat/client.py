"""An asyncio client for the justchat protocol (docs/PROTOCOL.md), for bots, tests and benchmarks.

    token = await login("http://127.0.0.1:8000/api/v1", "alice", "Secret-pass1")
    async with await Client.connect(
        "ws://127.0.0.1:8100/ws", token=token, reconnect=Reconnect()
    ) as chat:
        await chat.join(1)
        await chat.send(1, "hello")
        async for frame in chat.events():  # quiet channels are fine: no timeout
            ...

Reading is pull-based and belongs to one task at a time: ``events()``, ``recv()``, ``expect()``
and ``history()`` (which reads on its caller's behalf and keeps the other frames for the next
read). Sending may happen from any task. With ``reconnect``, a lost connection is reopened with
backoff and jitter, and every joined channel is resumed from its last seq (``channel_join`` with
``since_seq``): the reader sees each message once, in order, as if nothing happened, followed
by the channel's ``channel_resumed`` frame (``recovered=false``: page back with ``history()``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from justchat import wire
from justchat._client_link import Disconnected, Reconnect, close_quietly, closed_error, open_link
from justchat._client_rest import RequestFailed, login, signup
from justchat.errors import AuthError, ConfigError, JustchatError

__all__ = ["AuthError", "Client", "Disconnected", "Reconnect", "Refused", "RequestFailed"]
__all__ += ["login", "signup"]

log = logging.getLogger(__name__)

_JOIN_REFUSALS = frozenset({wire.ERR_BANNED, wire.ERR_JOIN_FAILED, wire.ERR_NO_CHANNEL})


class Refused(JustchatError):
    """The server answered a request with an ``error`` frame; ``detail`` is its text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Client:
    """One logical connection. Frames come out decoded, in arrival order.

    ``last_seq`` holds the highest message seq seen per channel; ``joined`` the channels this
    client has joined (and will resume after a reconnect); ``reconnects`` counts reconnections.
    """

    def __init__(
        self,
        ws: ClientConnection,
        user: wire.UserFrom,
        *,
        urls: Sequence[str] = (),
        token: str | None = None,
        reconnect: Reconnect | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if reconnect is not None and not urls:
            raise ConfigError("a Client that reconnects needs the URLs to reconnect to")
        self.ws = ws
        self.user = user
        self.last_seq: dict[int, int] = {}
        self.joined: dict[int, None] = {}  # an ordered set: resumed in the order joined
        self.reconnects = 0
        self._urls = list(urls)
        self._url_index = 0
        self._token = token
        self._reconnect = reconnect
        self._timeout_s = timeout_s
        self._attempt = 0
        self._reconnecting = asyncio.Lock()
        self._resumed: set[int] = set()  # channels where a replayed seq may come twice
        self._pending: deque[wire.AnyServerFrame] = deque()  # read by history(), not returned yet
        self._reading = False
        self._closing = False

    @classmethod
    async def connect(
        cls,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        reconnect: Reconnect | None = None,
    ) -> Self:
        """Connect and say hello (a guest without ``token``).

        ``url`` may be several gateways: a reconnect tries the next one. The first connection
        is not retried, so a wrong URL or token fails at once.

        Raises:
            AuthError: the token was rejected.
            Disconnected: the gateway refused the handshake.
            OSError, TimeoutError, websockets' InvalidURI / InvalidHandshake: no connection.
        """
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("Client.connect needs at least one URL")
        ws, user = await open_link(urls[0], token, timeout_s)
        return cls(ws, user, urls=urls, token=token, reconnect=reconnect, timeout_s=timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
        await self.ws.close()

    # -- sending ----------------------------------------------------------------------------------

    async def send_frame(self, frame_type: str, payload: dict[str, Any]) -> None:
        """Send any frame; with ``reconnect``, a connection found closed is reopened first."""
        data = json.dumps({"type": frame_type, "payload": payload})
        ws = self.ws
        try:
            await ws.send(data)
        except ConnectionClosed:
            if not self._may_reconnect():
                raise
            await self._recover(ws)
            await self.ws.send(data)

    async def join(self, channel_id: int, *, since_seq: int | None = None) -> None:
        payload: dict[str, Any] = {"channel_id": channel_id}
        if since_seq is not None:
            payload["since_seq"] = since_seq
        self._resumed.discard(channel_id)  # a plain join sends history again: deliver it
        await self.send_frame("channel_join", payload)
        # After the send: a reconnect inside it must not join this channel a second time.
        self.joined[channel_id] = None

    async def leave(self, channel_id: int) -> None:
        self.joined.pop(channel_id, None)
        await self.send_frame("channel_leave", {"channel_id": channel_id})

    async def send(
        self, channel_id: int, content: str, *, client_msg_id: str | None = None
    ) -> None:
        """Send a message; it is stored once it comes back (there is no local echo).

        The same ``client_msg_id`` sent twice stores one message: resend with it when unsure.
        """
        payload: dict[str, Any] = {"channel_id": channel_id, "content": content}
        if client_msg_id is not None:
            payload["client_msg_id"] = client_msg_id
        await self.send_frame("chat_send", payload)

    async def typing(self, channel_id: int) -> None:
        await self.send_frame("chat_typing", {"channel_id": channel_id})

    async def react(self, channel_id: int, message_id: str, emote: str) -> None:
        await self.send_frame(
            "chat_react_add", {"channel_id": channel_id, "message_id": message_id, "emote": emote}
        )

    async def unreact(self, channel_id: int, message_id: str, emote: str) -> None:
        await self.send_frame(
            "chat_react_remove",
            {"channel_id": channel_id, "message_id": message_id, "emote": emote},
        )

    # Moderation (moderators and admins): the outcome is broadcast, a refusal is an error frame.

    async def kick(self, channel_id: int, target: str, *, reason: str | None = None) -> None:
        await self.send_frame("chat_kick", _sanction(channel_id, target, None, reason))

    async def mute(
        self,
        channel_id: int,
        target: str,
        *,
        duration_s: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Mute ``target`` for ``duration_s`` seconds (None: until unmuted)."""
        await self.send_frame("chat_mute", _sanction(channel_id, target, duration_s, reason))

    async def unmute(self, channel_id: int, target: str) -> None:
        await self.send_frame("chat_unmute", _sanction(channel_id, target, None, None))

    async def ban(
        self,
        channel_id: int,
        target: str,
        *,
        duration_s: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Ban ``target`` for ``duration_s`` (None: until unbanned); it is removed at once."""
        await self.send_frame("chat_ban", _sanction(channel_id, target, duration_s, reason))

    async def unban(self, channel_id: int, target: str) -> None:
        await self.send_frame("chat_unban", _sanction(channel_id, target, None, None))

    # -- reading ----------------------------------------------------------------------------------

    async def recv(self, timeout_s: float = 10.0) -> wire.AnyServerFrame:
        """The next frame; TimeoutError after ``timeout_s`` without one.

        Without ``reconnect`` a closed connection raises websockets' ``ConnectionClosed``.
        """
        return await self._read(timeout_s)

    async def frames(self, timeout_s: float = 10.0) -> AsyncIterator[wire.AnyServerFrame]:
        """Frames until ``timeout_s`` passes without one (TimeoutError); see ``events()``."""
        while True:
            yield await self.recv(timeout_s)

    async def events(self) -> AsyncIterator[wire.AnyServerFrame]:
        """Every frame, for as long as the connection lasts, however long it stays quiet.

        Ends after ``close()``. Raises ``Disconnected`` when the server ends the connection
        (with ``reconnect``: when the attempts run out) and ``AuthError`` when a reconnect's
        token is refused. Keepalive pings notice a dead peer while nothing arrives.
        """
        while True:
            try:
                frame = await self._read(None)
            except ConnectionClosed as exc:
                if self._closing:
                    return
                raise closed_error(exc) from exc
            yield frame

    async def expect(
        self,
        frame_type: str,
        *,
        timeout_s: float = 10.0,
        where: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Skip frames until one of ``frame_type`` (matching ``where``) arrives."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no {frame_type} frame within {timeout_s}s")
            frame = await self.recv(left)
            if frame.__struct_config__.tag == frame_type and (where is None or where(frame)):
                return frame

    async def history(
        self,
        channel_id: int,
        *,
        before_seq: int | None = None,
        limit: int | None = None,
        timeout_s: float = 10.0,
    ) -> wire.HistoryOut:
        """One page of a joined channel's messages with seq below ``before_seq`` (the newest
        without), oldest first. Frames that arrive meanwhile are kept for the next read.

        Raises:
            Refused: an error frame naming this channel arrived instead.
            TimeoutError: no answer within ``timeout_s``.
        """
        payload: dict[str, Any] = {"channel_id": channel_id}
        if before_seq is not None:
            payload["before_seq"] = before_seq
        if limit is not None:
            payload["limit"] = limit
        await self.send_frame("channel_history", payload)
        skipped: list[wire.AnyServerFrame] = []
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    frame = await self._read(None)
                    if (
                        isinstance(frame, wire.HistoryFrame)
                        and frame.payload.channel_id == channel_id
                    ):
                        return frame.payload
                    if isinstance(frame, wire.ErrorFrame) and _names_channel(frame, channel_id):
                        raise Refused(frame.payload.detail)
                    skipped.append(frame)
        finally:
            self._pending.extendleft(reversed(skipped))

    async def history_pages(
        self, channel_id: int, *, limit: int | None = None, timeout_s: float = 10.0
    ) -> AsyncIterator[wire.HistoryOut]:
        """A channel's history page by page, newest page first, until the oldest message."""
        before: int | None = None
        while True:
            page = await self.history(
                channel_id, before_seq=before, limit=limit, timeout_s=timeout_s
            )
            yield page
            if not page.has_more or not page.messages:
                return
            before = page.messages[0].seq

    # -- internals --------------------------------------------------------------------------------

    async def _read(self, timeout_s: float | None) -> wire.AnyServerFrame:
        if self._pending:
            return self._pending.popleft()
        if self._reading:
            raise RuntimeError("another task is reading this Client; one reader at a time")
        self._reading = True
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    ws = self.ws
                    try:
                        raw = await ws.recv()
                    except ConnectionClosed:
                        if not self._may_reconnect():
                            raise
                        await self._recover(ws)
                        continue
                    frame = wire.decode_server(raw)
                    if self._track(frame):
                        return frame
        finally:
            self._reading = False

    def _track(self, frame: wire.AnyServerFrame) -> bool:
        """Update the per-channel state; False for a replayed message already delivered."""
        match frame:
            case wire.ChatSendFrame(payload=wire.ChatSendOut(channel_id=ch, seq=int(seq))):
                if ch in self._resumed and seq <= self.last_seq.get(ch, 0):
                    return False
                self.last_seq[ch] = max(self.last_seq.get(ch, 0), seq)
            case wire.KickFrame(payload=p) | wire.BanFrame(payload=p) if (
                p.target == self.user.username
            ):
                self.joined.pop(p.channel_id, None)  # removed: nothing to resume there
            case wire.ErrorFrame(payload=p) if p.detail in _JOIN_REFUSALS:
                channel_id = getattr(p, "channel_id", None)  # [ext] the frame's channel, if named
                if isinstance(channel_id, int):
                    self.joined.pop(channel_id, None)
        return True

    def _may_reconnect(self) -> bool:
        return self._reconnect is not None and not self._closing

    async def _recover(self, dead: ClientConnection) -> None:
        """Replace ``dead`` by a new connection, unless another task did so already."""
        async with self._reconnecting:
            if self.ws is dead:
                await self._reopen()

    async def _reopen(self) -> None:
        policy = self._reconnect
        if policy is None:
            raise RuntimeError("_reopen without a Reconnect policy")
        log.info("connection lost (%s %s); reconnecting", self.ws.close_code, self.ws.close_reason)
        while not self._closing:  # close() meanwhile: the reader sees the old socket closed
            if policy.max_attempts is not None and self._attempt >= policy.max_attempts:
                raise Disconnected(
                    f"gave up after {self._attempt} reconnect attempts",
                    code=self.ws.close_code,
                    reason=self.ws.close_reason or "",
                )
            await asyncio.sleep(policy.delay_s(self._attempt))
            if self._closing:
                return
            self._attempt += 1
            self._url_index = (self._url_index + 1) % len(self._urls)
            url = self._urls[self._url_index]
            try:
                ws, user = await open_link(url, self._token, self._timeout_s)
            except (OSError, TimeoutError, Disconnected, InvalidHandshake, InvalidURI) as exc:
                log.info("reconnect attempt %d to %s failed: %s", self._attempt, url, exc)
                continue
            if self._closing:
                await close_quietly(ws)
                return
            try:
                await self._rejoin(ws)
            except ConnectionClosed:
                continue
            except BaseException:
                await close_quietly(ws)
                raise
            self.ws, self.user = ws, user
            self._attempt = 0
            self.reconnects += 1
            log.info("reconnected to %s; resumed %d channels", url, len(self.joined))
            return

    async def _rejoin(self, ws: ClientConnection) -> None:
        """Join every joined channel again, from the last seq seen where there is one."""
        for channel_id in list(self.joined):  # join() may add one meanwhile
            payload: dict[str, Any] = {"channel_id": channel_id}
            last = self.last_seq.get(channel_id)
            if last is None:  # nothing seen yet: a plain join brings the history
                self._resumed.discard(channel_id)
            else:
                payload["since_seq"] = last
                self._resumed.add(channel_id)
            await ws.send(json.dumps({"type": "channel_join", "payload": payload}))


def _sanction(
    channel_id: int, target: str, duration_s: int | None, reason: str | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"channel_id": channel_id, "target": target}
    if duration_s is not None:
        payload["duration"] = duration_s
    if reason is not None:
        payload["reason"] = reason
    return payload


def _names_channel(frame: wire.ErrorFrame, channel_id: int) -> bool:
    # [ext] error frames caused by a client frame may carry its channel_id.
    return getattr(frame.payload, "channel_id", None) == channel_id
