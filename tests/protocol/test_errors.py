"""PROTOCOL.md section 4: error texts, the precondition order, and a connection that survives
every error."""

from __future__ import annotations

import json
import uuid

import pytest

from justchat import wire

FORMAT = "Invalid message format"
MALFORMED = "Malformed message."
NO_CHANNEL = "Channel does not exist."
NOT_MEMBER = "You must join this channel first"
NO_PERMISSION = "You don't have permission to run this command."

CLIENT_TYPES = [
    "chat_send",
    "chat_react_add",
    "chat_react_remove",
    "chat_typing",
    "chat_kick",
    "chat_mute",
    "chat_unmute",
    "chat_ban",
    "chat_unban",
    "channel_join",
    "channel_leave",
    "channel_history",
]
MODERATION = ["chat_kick", "chat_mute", "chat_unmute", "chat_ban", "chat_unban"]


def valid_payload(frame_type: str, channel_id: int) -> dict:
    """A well-formed payload of ``frame_type`` aimed at ``channel_id``."""
    extra = {
        "chat_send": {"content": "x"},
        "chat_react_add": {"emote": "👍", "message_id": str(uuid.uuid4())},
        "chat_react_remove": {"emote": "👍", "message_id": str(uuid.uuid4())},
        "chat_kick": {"target": "nobody"},
        "chat_mute": {"target": "nobody"},
        "chat_unmute": {"target": "nobody"},
        "chat_ban": {"target": "nobody"},
        "chat_unban": {"target": "nobody"},
    }.get(frame_type, {})
    return {"channel_id": channel_id, **extra}


@pytest.mark.parametrize(
    "frame_type", ["nope", "", "CHAT_SEND", "chat_send ", "chat-send", "ping", "chat_delete"]
)
async def test_unknown_type_is_invalid_message_format(proto, channel_id: int, frame_type) -> None:
    client = await proto.connect()
    await proto.joined(client, channel_id)
    await client.send_frame(frame_type, {"channel_id": channel_id, "content": "x"})
    frame = await client.recv()
    assert isinstance(frame, wire.ErrorFrame)
    assert frame.payload.detail == FORMAT
    await proto.quiet(client)


@pytest.mark.parametrize("frame_type", CLIENT_TYPES)
async def test_known_type_with_bad_payload_is_malformed(proto, frame_type: str) -> None:
    client = await proto.connect()
    for payload in ({}, {"channel_id": "not a number"}, {"channel_id": {"id": 1}}):
        await client.send_frame(frame_type, payload)
        assert await proto.error(client) == MALFORMED, payload


@pytest.mark.parametrize("frame_type", [t for t in CLIENT_TYPES if t != "channel_join"])
async def test_precondition_order_channel_then_member(
    proto, channel_id: int, frame_type: str
) -> None:
    member, outsider = await proto.connect(0), await proto.connect(1)
    await outsider.send_frame(frame_type, valid_payload(frame_type, channel_id))
    assert await proto.error(outsider) == NO_CHANNEL
    await proto.joined(member, channel_id)
    await outsider.send_frame(frame_type, valid_payload(frame_type, channel_id))
    assert await proto.error(outsider) == NOT_MEMBER
    await proto.quiet(member, outsider)


@pytest.mark.parametrize("frame_type", MODERATION)
async def test_precondition_order_channel_then_member_then_permission(
    proto, channel_id: int, frame_type: str
) -> None:
    guest = await proto.connect(0)
    user = await proto.connect(1, token=(await proto.account()).token)
    for client in (guest, user):
        await client.send_frame(frame_type, valid_payload(frame_type, channel_id))
        assert await proto.error(client) == NO_CHANNEL
    opener = await proto.connect()
    await proto.joined(opener, channel_id)
    for client in (guest, user):
        await client.send_frame(frame_type, valid_payload(frame_type, channel_id))
        assert await proto.error(client) == NOT_MEMBER
        await proto.joined(client, channel_id)
    await proto.collect(opener, 0.3)
    for client in (guest, user):
        await proto.collect(client, 0.3)
        payload = valid_payload(frame_type, channel_id) | {"target": opener.user.username}
        await client.send_frame(frame_type, payload)
        assert await proto.error(client) == NO_PERMISSION
    await proto.quiet(opener, guest, user)


async def test_errors_go_to_the_sender_only_and_nothing_else_happens(
    proto, channel_id: int
) -> None:
    actor, watcher = await proto.connect(0), await proto.connect(1)
    await proto.joined(watcher, channel_id)
    await proto.joined(actor, channel_id)
    await proto.collect(watcher, 0.3)
    frames = [
        {"type": "nope", "payload": {}},
        {"type": "chat_send", "payload": {"channel_id": channel_id}},
        {"type": "chat_send", "payload": {"channel_id": channel_id, "content": 1}},
        {"type": "chat_kick", "payload": {"channel_id": channel_id, "target": "x"}},
        {"type": "chat_mute", "payload": {"channel_id": channel_id, "target": "x"}},
        {"type": "channel_leave", "payload": {"channel_id": [channel_id]}},
    ]
    for sent in frames:
        await actor.ws.send(json.dumps(sent))
        frame = await actor.recv()
        assert isinstance(frame, wire.ErrorFrame), (sent, frame)
    await proto.quiet(watcher, actor)
    # Still a member, nothing changed: the next message is seq 1 and reaches both.
    echo = await proto.echo(actor, channel_id, "after the errors")
    assert echo.payload.seq == 1
    assert (await watcher.expect("chat_send")).payload.content == "after the errors"


async def test_error_payload_is_detail_and_the_frames_context(proto, channel_id: int) -> None:
    """``detail``, plus [ext] the ``channel_id`` and ``client_msg_id`` of the frame that caused
    the error when it had valid ones (the original client reads ``detail`` alone)."""
    ws, _ = await proto.hello()
    sent = [
        {"type": "chat_send", "payload": {"channel_id": channel_id}},
        {"type": "nope", "payload": {}},
        {"type": "chat_typing", "payload": {"channel_id": channel_id}},
        {"type": "chat_send", "payload": {"channel_id": channel_id, "client_msg_id": "c-1"}},
        {"type": "chat_send", "payload": {"channel_id": 2**31, "client_msg_id": ""}},
    ]
    for frame in sent:
        await ws.send(json.dumps(frame))
    for expected in (
        {"detail": MALFORMED, "channel_id": channel_id},
        {"detail": FORMAT},
        {"detail": NO_CHANNEL, "channel_id": channel_id},
        {"detail": MALFORMED, "channel_id": channel_id, "client_msg_id": "c-1"},
        {"detail": MALFORMED},  # invalid values are not repeated
    ):
        error = await proto.recv_json(ws)
        assert error["type"] == "error"
        assert error["payload"] == expected


async def test_connection_stays_open_after_every_error(proto, channel_id: int) -> None:
    client = await proto.connect()
    garbage: list[str | bytes] = [
        "not json",
        b"\x00",
        "[]",
        json.dumps({"type": "nope", "payload": {}}),
        json.dumps({"type": "hello", "payload": {}}),
    ]
    garbage += [json.dumps({"type": t, "payload": {}}) for t in CLIENT_TYPES]
    garbage += [
        json.dumps({"type": t, "payload": valid_payload(t, channel_id)})
        for t in CLIENT_TYPES
        if t != "channel_join"
    ]
    for sent in garbage:
        await client.ws.send(sent)
    for sent in garbage:
        frame = await client.recv()
        assert isinstance(frame, wire.ErrorFrame), (sent, frame)
    await proto.joined(client, channel_id)
    assert (await proto.echo(client, channel_id, "alive")).payload.seq == 1
