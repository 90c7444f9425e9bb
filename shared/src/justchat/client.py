"""A small asyncio client for the justchat protocol (tests, benchmarks and bots use it).

async with await Client.connect("ws://127.0.0.1:8100/ws") as chat:
    await chat.join(1)
    await chat.send(1, "hello")
    frame = await chat.expect("chat_send")
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

import websockets
from websockets.asyncio.client import ClientConnection

from justchat import wire


class Client:
    """One connection. ``frames()`` / ``recv()`` yield decoded server frames in arrival order."""

    def __init__(self, ws: ClientConnection, user: wire.UserFrom) -> None:
        self.ws = ws
        self.user = user
        self.last_seq: dict[int, int] = {}

    @classmethod
    async def connect(cls, url: str, *, token: str | None = None, timeout_s: float = 10.0) -> Self:
        ws = await websockets.connect(url, open_timeout=timeout_s, max_size=None)
        payload: dict[str, Any] = {} if token is None else {"token": token}
        await ws.send(json.dumps({"type": "hello", "payload": payload}))
        frame = wire.decode_server(await asyncio.wait_for(ws.recv(), timeout_s))
        if not isinstance(frame, wire.HelloFrame):
            await ws.close()
            raise ConnectionError(f"handshake failed: {frame}")
        return cls(ws, frame.payload.user)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.close()

    async def close(self) -> None:
        await self.ws.close()

    async def send_frame(self, frame_type: str, payload: dict[str, Any]) -> None:
        await self.ws.send(json.dumps({"type": frame_type, "payload": payload}))

    async def join(self, channel_id: int, *, since_seq: int | None = None) -> None:
        payload: dict[str, Any] = {"channel_id": channel_id}
        if since_seq is not None:
            payload["since_seq"] = since_seq
        await self.send_frame("channel_join", payload)

    async def leave(self, channel_id: int) -> None:
        await self.send_frame("channel_leave", {"channel_id": channel_id})

    async def send(
        self, channel_id: int, content: str, *, client_msg_id: str | None = None
    ) -> None:
        payload: dict[str, Any] = {"channel_id": channel_id, "content": content}
        if client_msg_id is not None:
            payload["client_msg_id"] = client_msg_id
        await self.send_frame("chat_send", payload)

    async def typing(self, channel_id: int) -> None:
        await self.send_frame("chat_typing", {"channel_id": channel_id})

    async def recv(self, timeout_s: float = 10.0) -> wire.AnyServerFrame:
        frame = wire.decode_server(await asyncio.wait_for(self.ws.recv(), timeout_s))
        if isinstance(frame, wire.ChatSendFrame) and isinstance(frame.payload.seq, int):
            channel = frame.payload.channel_id
            self.last_seq[channel] = max(self.last_seq.get(channel, 0), frame.payload.seq)
        return frame

    async def frames(self, timeout_s: float = 10.0) -> AsyncIterator[wire.AnyServerFrame]:
        while True:
            yield await self.recv(timeout_s)

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
