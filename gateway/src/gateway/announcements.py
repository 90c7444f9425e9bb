"""A joiner's first broadcasts wait for its own ``channel_join``.

presence-service may hold a ``channel_join`` for up to a members interval (it paces member
lists), while the joiner's messages go through chat-service at once. Without a wait, the other
members could see a message, a reaction or a typing notice from someone whose ``channel_join``
reaches them later. So a connection that has just joined holds its broadcasts to that channel
until its own ``channel_join`` has reached this gateway: Redis pub/sub delivers in publish order,
so every other gateway has received it by then too, and whatever the joiner sends next is
published after it. If presence-service does not answer within the bound, the sends go on.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from justchat import wire
from justchat.wire import UserFrom


class Announcements:
    """The connections whose ``channel_join`` has not come back yet, per channel."""

    def __init__(self) -> None:
        self._waiting: dict[int, dict[str, tuple[UserFrom, asyncio.Future[None]]]] = {}

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def watching(self, channel_id: int) -> bool:
        return channel_id in self._waiting

    def expect(self, channel_id: int, conn_id: str, user: UserFrom) -> None:
        """Call before announcing the join, so that its frame cannot be missed."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel_id, {})[conn_id] = (user, future)

    def seen(self, frame: bytes, conn_id: str | None = None) -> None:
        """A server frame (JSON) on its way to members (or to ``conn_id`` alone): if it is a
        ``channel_join``, the matching waiters are released."""
        try:
            decoded = wire.decode_server(frame)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if not isinstance(decoded, wire.JoinFrame):
            return
        waiting = self._waiting.get(decoded.payload.channel_id, {})
        for waiter_id, (user, future) in waiting.items():
            if user == decoded.payload.user and conn_id in (None, waiter_id) and not future.done():
                future.set_result(None)

    async def wait(self, channel_id: int, conn_id: str, timeout_s: float) -> None:
        """Return once the connection's join was seen (at once if it is not waiting), or after
        ``timeout_s``; either way the connection stops waiting in that channel."""
        entry = self._waiting.get(channel_id, {}).get(conn_id)
        if entry is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(entry[1])
        self.forget(channel_id, conn_id)

    def forget(self, channel_id: int, conn_id: str) -> None:
        waiting = self._waiting.get(channel_id)
        if waiting is None or waiting.pop(conn_id, None) is None:
            return
        if not waiting:
            del self._waiting[channel_id]
