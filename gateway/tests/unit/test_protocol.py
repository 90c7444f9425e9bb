"""The uvicorn protocol class: the sink in the ASGI scope, corked writes, the direct close."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.frames import text_frame
from gateway.protocol import EXTENSION, GatewayProtocol, corked

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.writes))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


RECEIVED: dict[int, list[dict[str, Any]]] = {}  # what each connection's app received


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    received = RECEIVED.setdefault(id(scope["extensions"][EXTENSION]), [])
    while True:
        received.append(message := await receive())
        if message["type"] == "websocket.disconnect":
            return


async def accepted() -> tuple[GatewayProtocol, FakeTransport]:
    config = Config(app=app, ws=GatewayProtocol, ws_per_message_deflate=False, lifespan="off")
    config.load()
    protocol = GatewayProtocol(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(UPGRADE)
    while not protocol.handshake_complete:
        await asyncio.sleep(0)
    assert transport.writes[0].startswith(b"HTTP/1.1 101")
    transport.writes.clear()
    return protocol, transport


async def test_the_sink_is_in_the_scope_and_writes_frames_as_they_are() -> None:
    protocol, transport = await accepted()
    assert protocol.scope["extensions"][EXTENSION] is protocol  # type: ignore[index]
    protocol.write_frame(text_frame(b"a"))
    protocol.write_frame(text_frame(b"b"))
    assert transport.writes == [text_frame(b"a"), text_frame(b"b")]
    assert protocol.buffered() == 2 * len(text_frame(b"a"))
    protocol.close_now(1000, "", 1.0)


async def test_corked_frames_go_out_in_one_write_per_connection_in_order() -> None:
    (one, t1), (two, t2) = await accepted(), await accepted()
    with corked():
        one.write_frame(b"1a")
        two.write_frame(b"2a")
        one.write_frame(b"1b")
        with corked():  # nested: joins the outer block
            one.write_frame(b"1c")
        assert t1.writes == t2.writes == []
    assert t1.writes == [b"1a1b1c"]
    assert t2.writes == [b"2a"]
    one.write_frame(b"1d")  # uncorked again
    assert t1.writes == [b"1a1b1c", b"1d"]
    for protocol in (one, two):
        protocol.close_now(1000, "", 1.0)


async def test_close_now_goes_after_held_frames_and_nothing_follows_it() -> None:
    protocol, transport = await accepted()
    with corked():
        protocol.write_frame(b"held")
        protocol.close_now(1013, "slow", 0.01)
        protocol.write_frame(b"after")
    protocol.write_frame(b"later")
    assert transport.writes[0] == b"held"
    assert transport.writes[1][:2] == b"\x88\x06" and transport.writes[1][2:4] == (1013).to_bytes(2)
    assert len(transport.writes) == 2
    # The client never answers the close: the socket is aborted after the timeout.
    while not transport.aborted:
        await asyncio.sleep(0.005)


async def test_wait_writable_returns_when_the_transport_drains() -> None:
    protocol, _ = await accepted()
    protocol.pause_writing()  # the transport's buffer went over its high-water mark
    waiting = asyncio.create_task(protocol.wait_writable())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    protocol.resume_writing()
    await asyncio.wait_for(waiting, 1)
    protocol.close_now(1000, "", 1.0)


async def test_messages_reach_the_app_in_order_then_the_disconnect() -> None:
    protocol, _ = await accepted()
    for text in ("1", "2"):
        protocol.data_received(b"\x81\x81abcd" + bytes([ord(text) ^ ord("a")]))  # masked
    while len(RECEIVED[id(protocol)]) < 2:
        await asyncio.sleep(0)
    protocol.close_now(1000, "", 1.0)
    while len(RECEIVED[id(protocol)]) < 3:
        await asyncio.sleep(0)
    assert [(m["type"], m.get("text")) for m in RECEIVED[id(protocol)]] == [
        ("websocket.receive", "1"),
        ("websocket.receive", "2"),
        ("websocket.disconnect", None),
    ]
