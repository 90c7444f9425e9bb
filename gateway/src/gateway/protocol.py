"""uvicorn's sans-I/O WebSocket protocol, plus a direct path for pre-encoded frames.

The handshake, reads, pings and the closing handshake stay uvicorn's. What this adds is the
connection's sink (``FrameSink``), handed to the app in ``scope["extensions"]``: fan-out writes
one frame's bytes straight to every member's transport, with no ASGI message, no per-recipient
encoding and no task per connection. Every server frame after the handshake goes through the
sink, so frames keep the order they were written in.
"""

from __future__ import annotations

import asyncio
from typing import Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

EXTENSION: Final = "justchat.frame_sink"
POLL_S: Final = 0.01


class GatewayProtocol(WebSocketsSansIOProtocol):
    """Run uvicorn with ``ws=GatewayProtocol``; the app finds the sink under ``EXTENSION``."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.handshake_initiated and not self.close_sent:  # upgrading: the app is starting
            self.scope["extensions"][EXTENSION] = self  # type: ignore[assignment]
        self.request = None  # type: ignore[assignment]  # parsed headers: in the scope now

    # -- FrameSink ---------------------------------------------------------------------------

    def write_frame(self, frame: bytes) -> None:
        """Queue a complete WebSocket frame on the transport (dropped once closing)."""
        if not (self.close_sent or self.disconnected):
            self.transport.write(frame)

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
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # read on, so that the client's close reply is seen
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(timeout_s, self.transport.abort)
