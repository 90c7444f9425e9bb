"""uvicorn's sans-I/O WebSocket protocol, plus a direct path for pre-encoded frames.

The handshake, reads, pings and the closing handshake stay uvicorn's. What this adds is the
connection's sink (``FrameSink``), handed to the app in ``scope["extensions"]``: fan-out writes
one frame's bytes straight to every member's transport, with no ASGI message, no per-recipient
encoding and no task per connection. Every server frame after the handshake goes through the
sink, so frames keep the order they were written in.

Inside ``corked()`` (the fan-out of a batch of pub/sub events), a connection's frames are held
and go out together when the block ends: one write (one system call) per connection per batch
instead of one per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

EXTENSION: Final = "justchat.frame_sink"
POLL_S: Final = 0.01


class GatewayProtocol(WebSocketsSansIOProtocol):
    """Run uvicorn with ``ws=GatewayProtocol``; the app finds the sink under ``EXTENSION``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[bytes] | None = None  # frames written while corked
        # The same interfaces as uvicorn's asyncio.Queue and asyncio.Event, a few KB smaller
        # (they live as long as the connection).
        self.queue = _Inbox(self.loop)  # type: ignore[assignment]
        self.writable = _Flag(self.loop)  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.handshake_initiated and not self.close_sent:  # upgrading: the app is starting
            self.scope["extensions"][EXTENSION] = self  # type: ignore[assignment]
        self.request = None  # type: ignore[assignment]  # parsed headers: in the scope now

    def release_handshake(self) -> None:
        """The handshake's response is sent: let it go (headers stay in the scope)."""
        self.response = None  # type: ignore[assignment]

    # -- FrameSink ---------------------------------------------------------------------------

    def write_frame(self, frame: bytes) -> None:
        """Queue a complete WebSocket frame on the transport (dropped once closing)."""
        if self.close_sent or self.disconnected:
            return
        if _cork.held is None:
            self.transport.write(frame)
        elif self.held is None:
            self.held = [frame]
            _cork.held.append(self)
        else:
            self.held.append(frame)

    def flush(self) -> None:
        """Write the frames held while corked, in one go."""
        frames, self.held = self.held, None
        if frames and not (self.close_sent or self.disconnected):
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel (0 once the connection is gone)."""
        if self.disconnected:
            return 0
        return self.transport.get_write_buffer_size()

    async def wait_writable(self) -> None:
        """Return once the transport's buffer fell below its low-water mark (or it closed)."""
        if self.writable.is_set():  # under the high-water mark: nothing to wake us, poll
            await asyncio.sleep(POLL_S)
        else:
            await self.writable.wait()

    def close_now(self, code: int, reason: str, timeout_s: float) -> None:
        """Send the close frame after what is already buffered, without waiting for room.

        The app's ``receive`` then reports a disconnect. If the client does not answer the
        close within ``timeout_s`` (it may not be reading at all), the socket is aborted:
        whatever it has not read is dropped and its buffers are freed.
        """
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.flush()  # what was written before the close goes out before it
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # read on, so that the client's close reply is seen
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(timeout_s, self.transport.abort)


class _Cork:
    held: list[GatewayProtocol] | None = None  # connections holding frames, while corked


_cork = _Cork()


@contextlib.contextmanager
def corked() -> Iterator[None]:
    """Hold every connection's frames until the block ends, then write each one's at once.

    For synchronous blocks only (the event loop is single-threaded: nothing else writes
    meanwhile); a nested block joins the outer one.
    """
    if _cork.held is not None:
        yield
        return
    _cork.held = []
    try:
        yield
    finally:
        held, _cork.held = _cork.held, None
        for protocol in held:
            protocol.flush()


class _Inbox:
    """What uvicorn asks of its receive queue: ``put_nowait``, ``get`` and ``empty``.

    It seldom holds more than one event: uvicorn stops reading the socket until the app has
    taken each message.
    """

    __slots__ = ("_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop  # not looked up on each get: each lookup is a getpid()
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class _Flag:
    """What uvicorn asks of its ``writable`` event: ``set``, ``clear``, ``is_set``, ``wait``."""

    __slots__ = ("_loop", "_set", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = True
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> bool:
        if not self._set:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        return True
