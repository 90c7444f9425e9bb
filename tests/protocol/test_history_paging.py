"""PROTOCOL.md section 5: channel_history, keyset pages going back by seq, newest page first and
each page oldest first."""

from __future__ import annotations

import json
import uuid

import pytest

from justchat import wire

MESSAGE_KEYS = {"channel_id", "sender", "content", "seq", "id", "timestamp", "reactions"}


async def page(client, channel_id: int, **params) -> wire.HistoryOut:
    await client.send_frame("channel_history", {"channel_id": channel_id, **params})
    frame = await client.expect("channel_history")
    assert frame.payload.channel_id == int(channel_id)  # numbers, even when asked with strings
    return frame.payload


def seqs(history: wire.HistoryOut) -> list[int]:
    return [m.seq for m in history.messages]


@pytest.fixture
async def filled(proto, channel_id: int) -> tuple[object, list]:
    """A channel with 70 messages and a member who has read none of them."""
    sent = await proto.fill(channel_id, 70)
    reader = await proto.connect()
    await proto.joined(reader, channel_id)
    return reader, sent


async def test_history_default_page_is_the_newest_50_oldest_first(
    proto, channel_id: int, filled
) -> None:
    reader, sent = filled
    newest = await page(reader, channel_id)
    assert seqs(newest) == list(range(21, 71))
    assert newest.has_more is True
    assert [m.id for m in newest.messages] == [f.id for f in sent[20:]]


async def test_history_pages_go_back_by_before_seq(proto, channel_id: int, filled) -> None:
    reader, sent = filled
    pages = []
    before = None
    while True:
        params = {"limit": 30} if before is None else {"limit": 30, "before_seq": before}
        got = await page(reader, channel_id, **params)
        pages.append(got)
        if not got.has_more:
            break
        before = got.messages[0].seq
    assert [seqs(p) for p in pages] == [
        list(range(41, 71)),
        list(range(11, 41)),
        list(range(1, 11)),
    ]
    assert [p.has_more for p in pages] == [True, True, False]
    everything = [m for p in reversed(pages) for m in p.messages]
    assert [(m.id, m.content) for m in everything] == [(f.id, f.payload.content) for f in sent]


async def test_history_limit_up_to_100(proto, channel_id: int, filled) -> None:
    reader, _ = filled
    whole = await page(reader, channel_id, limit=100)
    assert seqs(whole) == list(range(1, 71))
    assert whole.has_more is False
    await reader.send_frame("channel_history", {"channel_id": channel_id, "limit": 101})
    assert await proto.error(reader) == "Malformed message."


async def test_history_exact_fit_has_no_more(proto, channel_id: int, filled) -> None:
    reader, _ = filled
    first = await page(reader, channel_id, limit=70)
    assert seqs(first) == list(range(1, 71))
    assert first.has_more is False
    assert (await page(reader, channel_id, before_seq=1)).messages == []
    assert (await page(reader, channel_id, before_seq=1)).has_more is False


async def test_history_messages_are_chat_send_payloads_with_id_and_timestamp(
    proto, channel_id: int, registered
) -> None:
    member = await proto.connect(0, token=registered["token"])
    await proto.joined(member, channel_id)
    live = await proto.echo(member, channel_id, "one", client_msg_id="c-1")
    guest = await proto.connect(1)
    await proto.joined(guest, channel_id)
    from_guest = await proto.echo(guest, channel_id, "two")
    ws, _ = await proto.hello()
    await ws.send(json.dumps({"type": "channel_join", "payload": {"channel_id": channel_id}}))
    await ws.send(json.dumps({"type": "channel_history", "payload": {"channel_id": channel_id}}))
    while (frame := await proto.recv_json(ws))["type"] != "channel_history":
        pass
    assert set(frame) == {"type", "timestamp", "id", "payload"}
    assert set(frame["payload"]) == {"channel_id", "messages", "has_more"}
    first, second = frame["payload"]["messages"]
    assert set(first) == MESSAGE_KEYS | {"client_msg_id"}
    assert set(second) == MESSAGE_KEYS
    assert (first["id"], first["timestamp"], first["seq"]) == (live.id, live.timestamp, 1)
    assert first["sender"] == {"username": registered["username"], "is_guest": False}
    assert first["client_msg_id"] == "c-1"
    assert (second["id"], second["timestamp"]) == (from_guest.id, from_guest.timestamp)
    assert second["sender"] == {"username": guest.user.username, "is_guest": True}
    assert first["reactions"] == second["reactions"] == []
    assert frame["id"] not in (live.id, from_guest.id)  # the page frame's id is fresh


async def test_history_pages_carry_reactions(proto, channel_id: int) -> None:
    a, b = await proto.connect(0), await proto.connect(1)
    for client in (a, b):
        await proto.joined(client, channel_id)
    message_id = (await proto.echo(a, channel_id, "react")).id
    for client in (a, b):
        await client.send_frame(
            "chat_react_add",
            {"emote": "👍", "message_id": message_id, "channel_id": channel_id},
        )
        await client.expect("chat_react_add", where=lambda f, c=client: f.payload.user == c.user)
    got = await page(a, channel_id)
    (message,) = got.messages
    assert len(message.reactions) == 1
    reaction = message.reactions[0]
    assert (reaction.emote, reaction.count) == ("👍", 2)
    assert sorted(reaction.users) == sorted([a.user.username, b.user.username])


async def test_history_goes_to_the_requester_only(proto, channel_id: int) -> None:
    a, b = await proto.connect(0), await proto.connect(1)
    for client in (a, b):
        await proto.joined(client, channel_id)
    await proto.echo(a, channel_id, "x")
    await proto.collect(b, 0.3)
    await page(a, channel_id)
    await proto.quiet(b)


async def test_history_of_an_empty_channel(proto, channel_id: int) -> None:
    client = await proto.connect()
    await proto.joined(client, channel_id)
    empty = await page(client, channel_id)
    assert empty == wire.HistoryOut(channel_id=channel_id, messages=[], has_more=False)


async def test_history_accepts_numeric_strings(proto, channel_id: int, filled) -> None:
    reader, _ = filled
    got = await page(reader, str(channel_id), before_seq="21", limit="5")
    assert seqs(got) == [16, 17, 18, 19, 20]
    assert got.has_more is True


async def test_history_needs_the_channel_and_membership(proto, channel_id: int) -> None:
    member, outsider = await proto.connect(0), await proto.connect(1)
    await outsider.send_frame("channel_history", {"channel_id": channel_id})
    assert await proto.error(outsider) == "Channel does not exist."
    await proto.joined(member, channel_id)
    await outsider.send_frame("channel_history", {"channel_id": channel_id})
    assert await proto.error(outsider) == "You must join this channel first"


@pytest.mark.parametrize(
    "params", [{"limit": "many"}, {"limit": [10]}, {"before_seq": str(uuid.uuid4())}]
)
async def test_history_with_a_bad_payload_is_malformed(proto, channel_id: int, params) -> None:
    client = await proto.connect()
    await proto.joined(client, channel_id)
    await client.send_frame("channel_history", {"channel_id": channel_id, **params})
    assert await proto.error(client) == "Malformed message."
