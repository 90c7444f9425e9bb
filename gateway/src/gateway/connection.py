"""One WebSocket connection: its session and a bounded send queue drained by one writer task.

The queue is what keeps memory bounded (ARCHITECTURE invariant 5): a client that stops reading
fills its queue, and the next frame closes that connection with 1013 instead of growing memory.
Nobody else waits for it: fan-out only ever appends to queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.session import Session

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER: Final = 1013  # "try again later": reconnect and resume with since_seq
CLOSE_GOING_AWAY: Final = 1001
SEND_TIMEOUT_S: Final = 30.0


class Connection:
    def __init__(self, websocket: WebSocket, session: Session, queue_frames: int) -> None:
        self.websocket = websocket
        self.session = session
        self.conn_id = session.conn_id
        # Frames are queued as text: fan-out decodes each event once, not once per recipient.
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_frames)
        self.closing: tuple[int, str] | None = None
        self.writer = asyncio.create_task(self._write(), name=f"writer-{self.conn_id}")

    def deliver(self, channel_id: int, seq: int, frame: str) -> None:
        """A live channel event: sent unless buffered (joining) or already seen."""
        out = self.session.accept(channel_id, seq, frame)
        if out is not None:
            self.send(out)

    def send_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.send(frame.decode())

    def send(self, frame: str) -> None:
        if self.closing is not None:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("connection %s too slow; closing", self.conn_id)
            self.close(CLOSE_SLOW_CONSUMER, "Send queue full: reconnect and resume")

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (unless the queue is what overflowed)."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        if code == CLOSE_SLOW_CONSUMER:
            while not self.queue.empty():
                self.queue.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
        if self.queue.full():
            self.writer.cancel()

    async def _write(self) -> None:
        try:
            while (frame := await self.queue.get()) is not None:
                await asyncio.wait_for(self.websocket.send_text(frame), SEND_TIMEOUT_S)
        except (WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
            return  # the reader side notices the closed socket and cleans up
        finally:
            if self.closing is not None:
                code, reason = self.closing
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.websocket.close(code, reason), 5)

    async def drain(self) -> None:
        """Let the writer finish (used when the connection ends)."""
        if self.closing is None:
            self.close(1000, "")
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self.writer, 5)
