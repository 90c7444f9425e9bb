"""PROTOCOL.md section 4: chat_send and chat_typing."""

from __future__ import annotations

import json
import uuid

import pytest

from justchat import wire

MALFORMED = "Malformed message."


async def room(proto, channel_id: int, size: int = 2) -> list:
    clients = [await proto.connect(i % 2) for i in range(size)]
    for client in clients:
        await proto.joined(client, channel_id)
    for client in clients:
        await proto.collect(client, 0.2)
    return clients


async def test_send_is_broadcast_to_sender_too(proto, channel_id: int) -> None:
    sender, other = await room(proto, channel_id)
    await sender.send(channel_id, "hello all")
    for client in (sender, other):
        frame = await client.recv()
        assert isinstance(frame, wire.ChatSendFrame)
        assert frame.payload.channel_id == channel_id
        assert frame.payload.sender == sender.user
        assert frame.payload.content == "hello all"
    await proto.quiet(sender, other)


async def test_send_broadcast_payload_keys(proto, channel_id: int) -> None:
    ws, hello = await proto.hello()
    other = (await room(proto, channel_id, 1))[0]
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    await proto.collect(other, 0.3)
    payload = {"channel_id": channel_id, "content": "k"}
    await ws.send(json.dumps({"type": "chat_send", "payload": payload}))
    while (frame := await proto.recv_json(ws))["type"] != "chat_send":
        pass
    # The original keys, plus seq [ext]; client_msg_id only when the client sent one.
    assert set(frame["payload"]) == {"channel_id", "sender", "content", "seq"}
    assert frame["payload"]["sender"] == hello["payload"]["user"]


async def test_send_ignores_client_sender(proto, channel_id: int, registered) -> None:
    guest, other = await room(proto, channel_id)
    forged = {"username": registered["username"], "is_guest": False}
    await guest.send_frame(
        "chat_send", {"channel_id": channel_id, "content": "forged", "sender": forged}
    )
    for client in (guest, other):
        frame = await client.expect("chat_send")
        assert frame.payload.sender == guest.user


async def test_send_is_stored(proto, channel_id: int) -> None:
    sender, _ = await room(proto, channel_id)
    echo = await proto.echo(sender, channel_id, "kept")
    rows = await proto.sql(
        "SELECT id, sender_username, content FROM messages WHERE channel_id = $1", channel_id
    )
    assert [(str(r["id"]), r["sender_username"], r["content"]) for r in rows] == [
        (echo.id, sender.user.username, "kept")
    ]
    later = await proto.connect()
    history = (await proto.joined(later, channel_id))[0]
    assert isinstance(history, wire.ChatSendFrame)
    assert (history.id, history.payload.content) == (echo.id, "kept")


@pytest.mark.parametrize(
    "content",
    [
        "héllo wörld",
        "emoji 🌍🎉 and ZWJ 👩‍👩‍👧",
        "multi\nline\ttext",
        '<script>alert("x")</script> & "quotes" \\ backslash',
        "   padded   ",
        "\u202eright-to-left",
    ],
)
async def test_send_content_arrives_unchanged(proto, channel_id: int, content: str) -> None:
    sender, other = await room(proto, channel_id)
    await sender.send(channel_id, content)
    for client in (sender, other):
        frame = await client.expect("chat_send")
        assert frame.payload.content == content


async def test_send_to_a_missing_channel_or_as_a_non_member(proto, channel_id: int) -> None:
    member, outsider = await proto.connect(0), await proto.connect(1)
    await outsider.send(channel_id, "x")
    assert await proto.error(outsider) == "Channel does not exist."
    await proto.joined(member, channel_id)
    await outsider.send(channel_id, "x")
    assert await proto.error(outsider) == "You must join this channel first"
    await proto.quiet(member)


@pytest.mark.parametrize(
    "payload",
    [
        {"content": "no channel"},
        {"channel_id": "CH"},  # no content
        {"channel_id": "CH", "content": 5},
        {"channel_id": "CH", "content": None},
        {"channel_id": "CH", "content": ["x"]},
        {"channel_id": "CH", "content": {"text": "x"}},
        {"channel_id": None, "content": "x"},
        {"channel_id": ["CH"], "content": "x"},
        {"channel_id": 1.5, "content": "x"},
        {"channel_id": "CH-1", "content": "x"},
    ],
)
async def test_send_with_a_bad_payload_is_malformed(proto, channel_id: int, payload: dict) -> None:
    sender, other = await room(proto, channel_id)
    text = json.dumps(payload).replace('"CH"', str(channel_id)).replace("CH-1", f"{channel_id}x")
    await sender.ws.send(json.dumps({"type": "chat_send", "payload": json.loads(text)}))
    assert await proto.error(sender) == MALFORMED
    await proto.quiet(sender, other)


async def test_typing_is_broadcast_to_members_sender_too(proto, channel_id: int) -> None:
    typist, other = await room(proto, channel_id)
    await typist.typing(channel_id)
    for client in (typist, other):
        frame = await client.recv()
        assert isinstance(frame, wire.TypingFrame)
        assert frame.payload == wire.ChannelUserOut(channel_id=channel_id, user=typist.user)


async def test_typing_is_not_stored(proto, channel_id: int) -> None:
    typist, _ = await room(proto, channel_id)
    await typist.typing(channel_id)
    await typist.expect("chat_typing")
    later = await proto.connect()
    frames = await proto.joined(later, channel_id)
    assert [f.__struct_config__.tag for f in frames] == ["channel_members", "channel_join"]


async def test_typing_in_a_missing_channel_or_as_a_non_member(proto, channel_id: int) -> None:
    member, outsider = await proto.connect(0), await proto.connect(1)
    await outsider.typing(channel_id)
    assert await proto.error(outsider) == "Channel does not exist."
    await proto.joined(member, channel_id)
    await outsider.typing(channel_id)
    assert await proto.error(outsider) == "You must join this channel first"
    await proto.quiet(member)


async def test_typing_does_not_reach_other_channels(proto, channel_id: int) -> None:
    typist, _ = await room(proto, channel_id)
    elsewhere = proto.new_channel()
    bystander = await proto.connect()
    await proto.joined(bystander, elsewhere)
    await proto.joined(typist, elsewhere)
    await proto.collect(bystander, 0.3)
    await typist.typing(channel_id)
    await typist.expect("chat_typing")
    await proto.quiet(bystander)


async def test_send_storage_failure_answers_failed_and_broadcasts_nothing(
    proto, channel_id: int
) -> None:
    sender, other = await room(proto, channel_id)
    first = await proto.echo(sender, channel_id, "stored fine")
    await proto.collect(other, 0.2)
    poison = f"refused-{uuid.uuid4().hex}"
    constraint = f"protocol_test_{uuid.uuid4().hex[:12]}"
    # PostgreSQL refuses exactly this content: a storage failure for one message.
    await proto.sql(
        f"ALTER TABLE messages ADD CONSTRAINT {constraint} CHECK (content <> '{poison}') NOT VALID"
    )
    try:
        await sender.send(channel_id, poison)
        assert await proto.error(sender) == "Failed to send message"
    finally:
        await proto.sql(f"ALTER TABLE messages DROP CONSTRAINT {constraint}")
    await proto.quiet(sender, other)
    # Nothing was stored and no seq was used up.
    after = await proto.echo(sender, channel_id, "stored again")
    assert after.payload.seq == first.payload.seq + 1
    rows = await proto.sql("SELECT content FROM messages WHERE channel_id = $1", channel_id)
    assert sorted(r["content"] for r in rows) == ["stored again", "stored fine"]
