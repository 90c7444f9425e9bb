"""PROTOCOL.md section 3 against running gateways: guest and token hellos, every way to fail."""

from __future__ import annotations

import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from justchat import auth, wire
from justchat.stack import Stack


async def raw(stack: Stack, gateway: int = 0) -> websockets.ClientConnection:
    return await websockets.connect(stack.gateway_urls[gateway])


async def closed_with(ws: websockets.ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def test_guest_hello_is_answered_with_a_new_guest(stack: Stack) -> None:
    ws = await raw(stack)
    await ws.send(json.dumps({"type": "hello", "payload": {}}))
    reply = json.loads(await ws.recv())
    assert set(reply) == {"type", "timestamp", "id", "payload"}
    assert reply["type"] == "hello"
    assert reply["payload"]["token"] is None
    assert reply["payload"]["user"]["is_guest"] is True
    assert reply["payload"]["user"]["username"].startswith("Guest")
    assert reply["timestamp"].endswith("Z")
    await ws.close()


async def test_token_hello_is_answered_with_the_account(stack: Stack, registered) -> None:
    ws = await raw(stack, 1)
    await ws.send(
        json.dumps(
            {
                "type": "hello",
                "timestamp": "2026-01-01T00:00:00Z",
                "id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                "payload": {"token": registered["token"]},
            }
        )
    )
    reply = wire.decode_server(await ws.recv())
    assert isinstance(reply, wire.HelloFrame)
    assert reply.payload == wire.HelloOut(
        token=None, user=wire.UserFrom(username=registered["username"], is_guest=False)
    )
    await ws.close()


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"type": "chat_send", "payload": {"channel_id": 1, "content": "x"}}),
        "not json",
        json.dumps({"type": "hello"}),
        json.dumps({"type": "hello", "payload": []}),
        json.dumps({"payload": {}}),
        json.dumps({"type": "hello", "payload": {}, "id": "not-a-uuid"}),
        b"\x00binary",
    ],
)
async def test_bad_hello_gets_an_error_then_close_1000(stack: Stack, first: str | bytes) -> None:
    ws = await raw(stack)
    await ws.send(first)
    error = wire.decode_server(await ws.recv())
    assert isinstance(error, wire.ErrorFrame)
    assert error.payload.detail == "Invalid HELLO message"
    assert await closed_with(ws) == (1000, "Invalid HELLO message")


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("garbage", "invalid token"),
        ("expired", "token expired"),
        ("wrong-secret", "invalid token"),
    ],
)
async def test_bad_token_closes_1000_with_the_reason(
    stack: Stack, jwt_secret: str, token: str, why: str
) -> None:
    if token == "expired":
        token = auth.create_token(
            user_id=1,
            username="x",
            role="user",
            secret=jwt_secret,
            ttl_s=60,
            now=time.time() - 3600,
        )
    elif token == "wrong-secret":
        token = auth.create_token(user_id=1, username="x", role="user", secret="s" * 40, ttl_s=60)
    ws = await raw(stack)
    await ws.send(json.dumps({"type": "hello", "payload": {"token": token}}))
    assert await closed_with(ws) == (1000, f"Authentication failed: {why}")


async def test_a_silent_client_is_closed_after_the_handshake_timeout(stack: Stack) -> None:
    ws = await raw(stack)
    started = time.monotonic()
    code, _ = await closed_with(ws)
    assert code == 1000
    assert time.monotonic() - started < 10  # the stack runs with a 2 s handshake timeout


async def test_errors_after_the_handshake_keep_the_connection_open(
    connect, channel_id: int
) -> None:
    client = await connect(0)
    other = await connect(1)
    await other.join(channel_id)
    await other.expect("channel_join")
    cases = [
        ({"type": "nope", "payload": {}}, "Invalid message format"),
        (
            {"type": "chat_send", "payload": {"channel_id": "abc", "content": "x"}},
            "Malformed message.",
        ),
        (
            {"type": "chat_send", "payload": {"channel_id": 2**40, "content": "x"}},
            "Malformed message.",
        ),
        (
            {
                "type": "chat_send",
                "payload": {
                    "channel_id": channel_id + 1 if channel_id < 2**31 - 1 else 1,
                    "content": "x",
                },
            },
            "Channel does not exist.",
        ),
        (
            {"type": "chat_send", "payload": {"channel_id": str(channel_id), "content": "x"}},
            "You must join this channel first",
        ),
        (
            {"type": "chat_typing", "payload": {"channel_id": channel_id}},
            "You must join this channel first",
        ),
        ({"type": "hello", "payload": {}}, "Invalid message format"),
    ]
    for frame, detail in cases:
        await client.ws.send(json.dumps(frame))
        error = await client.recv()
        assert isinstance(error, wire.ErrorFrame), frame
        assert error.payload.detail == detail, frame
    await client.ws.send(b"\x01\x02")
    error = await client.recv()
    assert isinstance(error, wire.ErrorFrame)
    assert error.payload.detail == "Invalid message format"
    # Still usable: a numeric-string channel id joins like a number.
    await client.send_frame("channel_join", {"channel_id": str(channel_id)})
    members = await client.expect("channel_members")
    assert client.user in members.payload.members
