"""PROTOCOL.md section 1: one WebSocket endpoint, text frames of one JSON object each; binary,
non-JSON and oversized frames get an error (or close 1009), never a silent drop."""

from __future__ import annotations

import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from justchat import wire

MAX_FRAME_BYTES = 65_536  # JUSTCHAT_MAX_FRAME_BYTES's default; the session stack keeps it
FORMAT = "Invalid message format"
MALFORMED = "Malformed message."


async def test_transport_ws_endpoint_on_every_gateway(proto) -> None:
    for gateway in range(len(proto.stack.gateway_urls)):
        assert proto.stack.gateway_urls[gateway].endswith("/ws")
        _, reply = await proto.hello(gateway)
        assert reply["type"] == "hello"


async def test_transport_other_paths_are_not_websocket_endpoints(proto) -> None:
    url = proto.stack.gateway_urls[0].removesuffix("/ws") + "/chat"
    with pytest.raises(InvalidStatus):
        await websockets.connect(url)


async def test_transport_server_frames_are_text_holding_one_json_object(
    proto, channel_id: int
) -> None:
    ws, _ = await proto.hello(1)
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    await ws.send(
        json.dumps({"type": "chat_send", "payload": {"channel_id": channel_id, "content": "t"}})
    )
    await ws.send(json.dumps({"type": "nope", "payload": {}}))
    seen = []
    while len(seen) < 4:  # members, join, error (typed after the join), chat_send
        raw = await ws.recv()
        assert isinstance(raw, str), f"binary frame from the server: {raw!r}"
        frame = json.loads(raw)
        assert isinstance(frame, dict)
        seen.append(frame["type"])
    assert sorted(seen) == ["channel_join", "channel_members", "chat_send", "error"]


async def test_transport_binary_frame_gets_an_error_and_the_connection_stays(
    proto, channel_id: int
) -> None:
    ws, _ = await proto.hello()
    await ws.send(b"\x00\x01binary")
    error = await proto.recv_json(ws)
    assert error["type"] == "error"
    assert error["payload"]["detail"] == FORMAT
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    assert (await proto.recv_json(ws))["type"] == "channel_members"


async def test_transport_binary_frame_holding_valid_json_is_still_an_error(
    proto, channel_id: int
) -> None:
    ws, _ = await proto.hello()
    frame = json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}})
    await ws.send(frame.encode())
    error = await proto.recv_json(ws)
    assert error["type"] == "error"
    assert error["payload"]["detail"] == FORMAT
    # The join did not happen: the channel still does not exist.
    await ws.send(json.dumps({"type": "chat_typing", "payload": {"channel_id": channel_id}}))
    assert (await proto.recv_json(ws))["payload"]["detail"] == "Channel does not exist."


@pytest.mark.parametrize(
    "text",
    ["not json", "", "{", '{"type": "chat_send"', "[1, 2]", "null", '"chat_send"', "42", "true"],
)
async def test_transport_non_json_or_non_object_gets_an_error(proto, text: str) -> None:
    ws, _ = await proto.hello()
    await ws.send(text)
    error = await proto.recv_json(ws)
    assert error["type"] == "error"
    assert error["payload"]["detail"] == FORMAT
    # One error, then the connection still answers.
    await ws.send(json.dumps({"type": "nope", "payload": {}}))
    assert (await proto.recv_json(ws))["payload"]["detail"] == FORMAT


async def test_transport_oversized_frame_closes_1009(proto) -> None:
    ws, _ = await proto.hello(max_size=None)
    frame = json.dumps({"type": "nope", "payload": {"pad": "x" * MAX_FRAME_BYTES}})
    assert len(frame.encode()) > MAX_FRAME_BYTES
    await ws.send(frame)
    code, _, frames = await proto.closed_with(ws)
    assert code == 1009
    assert frames == []


async def test_transport_oversized_hello_closes_1009(proto) -> None:
    ws = await proto.raw()
    await ws.send(json.dumps({"type": "hello", "payload": {}, "pad": "x" * MAX_FRAME_BYTES}))
    code, _, frames = await proto.closed_with(ws)
    assert code == 1009
    assert not any(json.loads(f)["type"] == "hello" for f in frames)


async def test_transport_a_frame_of_exactly_the_limit_is_accepted(proto, channel_id: int) -> None:
    ws, _ = await proto.hello()
    frame = {"type": "channel_join", "payload": {"channel_id": channel_id}, "pad": ""}
    frame["pad"] = "x" * (MAX_FRAME_BYTES - len(json.dumps(frame).encode()))
    text = json.dumps(frame)
    assert len(text.encode()) == MAX_FRAME_BYTES
    await ws.send(text)
    assert (await proto.recv_json(ws))["type"] == "channel_members"


async def test_transport_oversized_frame_leaves_no_half_registered_member(
    proto, channel_id: int
) -> None:
    watcher = await proto.connect(0)
    await proto.joined(watcher, channel_id)
    ws, hello = await proto.hello(1)
    user = hello["payload"]["user"]
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    await watcher.expect(
        "channel_join", where=lambda f: f.payload.user.username == user["username"]
    )
    await ws.send("x" * (MAX_FRAME_BYTES + 1))
    code, _, _ = await proto.closed_with(ws)
    assert code == 1009
    members = await watcher.expect("channel_members")
    assert [m.username for m in members.payload.members] == [watcher.user.username]
    leave = await watcher.recv()
    assert isinstance(leave, wire.LeaveFrame)
    assert leave.payload.user == wire.UserFrom(**user)


async def test_transport_deeply_nested_hello_is_a_bad_hello(proto) -> None:
    ws = await proto.raw()
    await ws.send('{"type": "hello", "x": ' + "[" * 2000 + "]" * 2000 + ', "payload": {}}')
    code, reason, frames = await proto.closed_with(ws)
    assert [json.loads(f)["payload"] for f in frames] == [{"detail": "Invalid HELLO message"}]
    assert (code, reason) == (1000, "Invalid HELLO message")


async def test_transport_deeply_nested_frame_gets_a_format_error(proto) -> None:
    ws, _ = await proto.hello()
    payload = json.dumps({"channel_id": proto.new_channel(), "content": "x"})
    nested = "[" * 2000 + "]" * 2000
    await ws.send(f'{{"type": "chat_send", "x": {nested}, "payload": {payload}}}')
    error = await proto.recv_json(ws)
    assert error["type"] == "error"
    # Rejected as garbage, or the unknown key ignored: either way not a server fault.
    assert error["payload"]["detail"] in (FORMAT, MALFORMED, "Channel does not exist.")
