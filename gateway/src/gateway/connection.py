"""One WebSocket connection: its session, and frames written straight to its transport.

There is no queue and no task per connection. Fan-out writes each frame's bytes to every
member's sink; what a client has not read yet waits in its transport's buffer. That buffer is
what keeps memory bounded (ARCHITECTURE invariant 5): once it holds more than the connection's
byte budget, the next frame cuts the client off with close 1013 instead of growing memory.
Nobody else waits for it. A cut-off connection leaves its channels at once (``on_cut_off``),
even though its socket may take a while to close: the close frame goes out after what is
buffered, and a client that does not read it within ``CLOSE_WAIT_S`` has its socket aborted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from gateway.frames import text_frame
from gateway.session import Session

log = logging.getLogger(__name__)

CLOSE_SLOW_CONSUMER: Final = 1013  # "try again later": reconnect and resume with since_seq
CLOSE_GOING_AWAY: Final = 1001
CLOSE_WAIT_S: Final = 60.0  # how long a cut-off socket may take to accept its close frame
CLOSE_TIMEOUT_S: Final = 10.0  # the same for an ordinary close


class FrameSink(Protocol):
    """Where a connection's frames go (``gateway.protocol.GatewayProtocol``)."""

    def write_frame(self, frame: bytes) -> None: ...

    def buffered(self) -> int: ...

    async def wait_writable(self) -> None: ...

    def close_now(self, code: int, reason: str, timeout_s: float) -> None: ...

    def release_handshake(self) -> None: ...


class Connection:
    __slots__ = ("budget", "closing", "departed", "join_frames", "on_cut_off", "session", "sink")

    def __init__(
        self,
        sink: FrameSink,
        session: Session,
        *,
        budget: int,
        join_frames: int,
        on_cut_off: Callable[[Connection], None] | None = None,
    ) -> None:
        self.sink = sink
        self.session = session
        self.budget = budget  # bytes the client may leave unread
        self.join_frames = join_frames  # live frames it may have waiting while it joins
        self.on_cut_off = on_cut_off
        self.closing: tuple[int, str] | None = None
        self.departed = False  # its channels and online state have been given up

    @property
    def conn_id(self) -> str:
        return self.session.conn_id

    def deliver(self, channel_id: int, seq: int, frame: bytes) -> None:
        """A live channel event (a complete WebSocket frame): sent unless buffered (joining)
        or already seen."""
        out = self.session.accept(channel_id, seq, frame)
        if out is not None:
            self.write(out)
        elif self.session.buffered(channel_id) > self.join_frames:
            self.cut_off()  # joining for so long that its backlog would not fit anyway

    def send_frames(self, frames: list[bytes]) -> None:
        """Encoded server frames (JSON), for this connection alone."""
        for frame in frames:
            self.write(text_frame(frame))

    def write(self, frame: bytes) -> None:
        """A complete WebSocket frame; a client over its budget is cut off instead."""
        if self.closing is not None:
            return
        if self.sink.buffered() > self.budget:
            self.cut_off()
            return
        self.sink.write_frame(frame)

    async def send_paced(self, frames: list[bytes], timeout_s: float) -> None:
        """Write complete frames, waiting for room as the client reads (a resume may exceed
        the budget); a client that reads nothing for ``timeout_s`` is cut off."""
        for frame in frames:
            while self.closing is None and self.sink.buffered() > self.budget:
                try:
                    await asyncio.wait_for(self.sink.wait_writable(), timeout_s)
                except TimeoutError:
                    self.cut_off()
            if self.closing is not None:
                return
            self.sink.write_frame(frame)

    def cut_off(self) -> None:
        """Too slow: close with 1013 after what is buffered, and leave its channels now."""
        if self.closing is not None:
            return
        log.warning("connection %s too slow; closing", self.conn_id)
        self.close(CLOSE_SLOW_CONSUMER, "Send buffer full: reconnect and resume", CLOSE_WAIT_S)
        if self.on_cut_off is not None:
            self.on_cut_off(self)

    def close(self, code: int, reason: str, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close after the frames already written."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        self.sink.close_now(code, reason, timeout_s)
