"""One simulated user: a picows listener, driven by callbacks (no task, no queue per frame).

Frames go straight to the current ``Phase`` of the shared ``Hub``; a client only awaits during its
handshake (hello, then its own ``channel_join``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Final

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from bench import frames

if TYPE_CHECKING:
    from bench.phase import Phase

TEXT: Final = WSMsgType.TEXT
CLOSE: Final = WSMsgType.CLOSE
_IDLE, _HELLO, _JOIN = 0, 1, 2


class HandshakeError(Exception):
    """The server refused or dropped a hello or a join; the message says how."""


class Hub:
    """What every client of a run shares: the phase being recorded, and how clients ended."""

    def __init__(self) -> None:
        self.phase: Phase | None = None
        self.closes: Counter[str] = Counter()  # "1013 reason" -> connections closed that way
        self.frames = 0  # every text frame received


class BenchClient(WSListener):
    def __init__(self, index: int, hub: Hub) -> None:
        super().__init__()
        self.index = index
        self.hub = hub
        self.transport: WSTransport | None = None
        self.username = ""
        self.marker = b""
        self.channel = 0
        self.in_flight = 0  # sent in the current phase, neither echoed nor refused yet
        self.closed = False
        self._waiting = _IDLE
        self._waiter: asyncio.Future[None] | None = None

    # -- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is not TEXT:
            if kind is CLOSE:
                code = frame.get_close_code()
                self._closed(
                    f"{int(code.value)} {frame.get_close_message().decode(errors='replace')}"
                )
                transport.send_close(WSCloseCode.OK)
                transport.disconnect()
            return
        self.hub.frames += 1
        data = frame.get_payload_as_bytes()
        if data.startswith(frames.CHAT_PREFIX):
            phase = self.hub.phase
            if phase is not None:
                phase.on_chat(self, frames.decode_chat(data).payload, time.perf_counter_ns())
        elif self._waiting:
            self._handshake_frame(data)
        elif data.startswith(frames.ERROR_PREFIX):
            phase = self.hub.phase
            if phase is not None:
                phase.on_error(self, frames.decode_error(data).payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._closed("disconnected")

    # -- handshake --------------------------------------------------------------------------

    async def handshake(self, token: str | None, channel: int, timeout_s: float) -> None:
        """hello, then join ``channel``; returns once this client's own channel_join arrives."""
        self.channel = channel
        await self._exchange(_HELLO, frames.hello(token), timeout_s)
        await self._exchange(_JOIN, frames.join(channel), timeout_s)

    async def _exchange(self, step: int, data: bytes, timeout_s: float) -> None:
        if self.transport is None or self.closed:
            raise HandshakeError("not connected")
        self._waiter = asyncio.get_running_loop().create_future()
        self._waiting = step
        self.transport.send(TEXT, data)
        try:
            await asyncio.wait_for(self._waiter, timeout_s)
        except TimeoutError as exc:
            what = "hello" if step == _HELLO else "join"
            raise HandshakeError(f"{what} timed out") from exc
        finally:
            self._waiting = _IDLE
            self._waiter = None

    def _handshake_frame(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._waiting == _HELLO and data.startswith(frames.HELLO_PREFIX):
            self.username = frames.decode_hello(data).payload.user.username
            self.marker = frames.user_marker(self.username)
            waiter.set_result(None)
        elif self._waiting == _JOIN and data.startswith(frames.JOIN_PREFIX):
            if self.marker in data:
                waiter.set_result(None)
        elif data.startswith(frames.ERROR_PREFIX):
            waiter.set_exception(HandshakeError(frames.decode_error(data).payload.detail))

    def _closed(self, how: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.hub.closes[how] += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(HandshakeError(f"closed: {how}"))

    # -- sending ----------------------------------------------------------------------------

    def send_chat(self, body: bytes, msg_no: int) -> None:
        """One message to this client's channel, numbered ``msg_no`` by its phase."""
        if self.transport is None or self.closed:
            return
        self.in_flight += 1
        self.transport.send(TEXT, frames.chat(self.channel, body, msg_no))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()
