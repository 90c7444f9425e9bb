"""One WebSocket connection: its session and a bounded send queue drained by one writer task.

The queue is what keeps memory bounded (ARCHITECTURE invariant 5): a client that stops reading
fills its queue, and the next frame cuts it off with close 1013 instead of growing memory.
Nobody else waits for it: fan-out only ever appends to queues. A cut-off connection leaves its
channels at once (``on_cut_off``), even though its socket may take a while to close: the close
frame goes out as soon as the client reads again, or the keepalive timeout ends the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.session import Session

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER: Final = 1013  # "try again later": reconnect and resume with since_seq
CLOSE_GOING_AWAY: Final = 1001
CLOSE_WAIT_S: Final = 60.0  # how long a cut-off socket may take to accept its close frame
SEND_ERRORS: Final = (WebSocketDisconnect, RuntimeError, OSError)


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        session: Session,
        queue_frames: int,
        on_cut_off: Callable[[Connection], None] | None = None,
    ) -> None:
        self.websocket = websocket
        self.session = session
        self.conn_id = session.conn_id
        self.on_cut_off = on_cut_off
        # Frames are queued as text: fan-out decodes each event once, not once per recipient.
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_frames)
        self.closing: tuple[int, str] | None = None
        self.departed = False  # its channels and online state have been given up
        self.writer = asyncio.create_task(self._write(), name=f"writer-{self.conn_id}")

    def deliver(self, channel_id: int, seq: int, frame: str) -> None:
        """A live channel event: sent unless buffered (joining) or already seen."""
        out = self.session.accept(channel_id, seq, frame)
        if out is not None:
            self.send(out)
        elif self.session.buffered(channel_id) > self.queue.maxsize:
            self.cut_off()  # joining for so long that its backlog would not fit anyway

    def send_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.send(frame.decode())

    def send(self, frame: str) -> None:
        if self.closing is not None:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.cut_off()

    async def send_paced(self, frames: list[str], timeout_s: float) -> None:
        """Queue frames, waiting for room as the client reads (a resume may exceed the queue);
        a client that reads nothing for ``timeout_s`` is cut off."""
        for frame in frames:
            if self.closing is not None:
                return
            try:
                await asyncio.wait_for(self.queue.put(frame), timeout_s)
            except TimeoutError:
                self.cut_off()
                return

    def cut_off(self) -> None:
        """Too slow: drop what it has not read, close with 1013, leave its channels now."""
        if self.closing is not None:
            return
        log.warning("connection %s too slow; closing", self.conn_id)
        self.closing = (CLOSE_SLOW_CONSUMER, "Send queue full: reconnect and resume")
        self.writer.cancel()  # it is waiting for the client to read; what it holds is dropped
        while not self.queue.empty():
            self.queue.get_nowait()
        self.writer = asyncio.create_task(self._close_socket(CLOSE_WAIT_S))
        if self.on_cut_off is not None:
            self.on_cut_off(self)

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.writer.cancel()
            self.writer = asyncio.create_task(self._close_socket(5.0))

    async def _write(self) -> None:
        try:
            while (frame := await self.queue.get()) is not None:
                await self.websocket.send_text(frame)
        except SEND_ERRORS:
            return  # the reader side notices the closed socket and cleans up
        await self._close_socket(5.0)

    async def _close_socket(self, timeout_s: float) -> None:
        code, reason = self.closing or (1000, "")
        with contextlib.suppress(*SEND_ERRORS, TimeoutError):
            await asyncio.wait_for(self.websocket.close(code, reason), timeout_s)

    async def drain(self) -> None:
        """Let the writer finish (used when the connection ends)."""
        if self.closing is None:
            self.close(1000, "")
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self.writer, 5)
