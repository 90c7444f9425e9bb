"""PROTOCOL.md section 5 (extensions that carry no moderation or paging): seq, client_msg_id,
since_seq with channel_resumed, the content length limit and 32-bit channel ids."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from justchat import wire

MAX_CHARS = 4000  # JUSTCHAT_MAX_MESSAGE_CHARS's default
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)


def kinds(frames: list) -> list[str]:
    return [f.__struct_config__.tag for f in frames]


async def room(proto, channel_id: int, size: int = 2) -> list:
    clients = [await proto.connect(i % 2) for i in range(size)]
    for client in clients:
        await proto.joined(client, channel_id)
    for client in clients:
        await proto.collect(client, 0.2)
    return clients


async def messages(client, count: int) -> list[wire.ChatSendFrame]:
    got: list[wire.ChatSendFrame] = []
    while len(got) < count:
        frame = await client.recv()
        if isinstance(frame, wire.ChatSendFrame):
            got.append(frame)
    return got


async def test_ext_seq_gap_free_per_channel(proto, channel_id: int) -> None:
    other_channel = proto.new_channel()
    a, b = await room(proto, channel_id)
    for client in (a, b):
        await proto.joined(client, other_channel)
    await proto.collect(a, 0.2)
    for i in range(6):
        await (a if i % 2 else b).send(channel_id, f"first {i}")
        await (b if i % 2 else a).send(other_channel, f"second {i}")
    got = await messages(a, 12)
    by_channel = {
        c: [f.payload.seq for f in got if f.payload.channel_id == c]
        for c in (channel_id, other_channel)
    }
    assert by_channel == {channel_id: [1, 2, 3, 4, 5, 6], other_channel: [1, 2, 3, 4, 5, 6]}


async def test_ext_seq_is_the_delivery_order_for_every_member(proto, channel_id: int) -> None:
    clients = await room(proto, channel_id, 4)
    per_client = 10

    async def blast(client) -> None:
        for i in range(per_client):
            await client.send(channel_id, f"{client.user.username} {i}")

    await asyncio.gather(*(blast(c) for c in clients))
    total = per_client * len(clients)
    views = await asyncio.gather(*(messages(c, total) for c in clients))
    first = [(f.payload.seq, f.id, f.payload.content) for f in views[0]]
    assert [seq for seq, _, _ in first] == list(range(1, total + 1))
    for view in views[1:]:
        assert [(f.payload.seq, f.id, f.payload.content) for f in view] == first
    # Each sender's own messages keep the order it sent them in.
    for client in clients:
        mine = [c for _, _, c in first if c.startswith(client.user.username + " ")]
        assert mine == [f"{client.user.username} {i}" for i in range(per_client)]


async def test_ext_client_msg_id_dedup_answers_both_sends(proto, channel_id: int) -> None:
    sender, watcher = await room(proto, channel_id)
    await sender.send(channel_id, "original", client_msg_id="cmid-1")
    await sender.send(channel_id, "retry with other text", client_msg_id="cmid-1")
    answers = await messages(sender, 2)
    assert answers[0].id == answers[1].id
    for answer in answers:
        assert answer.payload.content == "original"
        assert answer.payload.seq == 1
        assert answer.payload.client_msg_id == "cmid-1"  # echoed
    seen = await messages(watcher, 1)
    assert seen[0].id == answers[0].id
    assert seen[0].payload.client_msg_id == "cmid-1"
    await proto.quiet(sender, watcher)
    rows = await proto.sql("SELECT count(*) AS n FROM messages WHERE channel_id = $1", channel_id)
    assert rows[0]["n"] == 1
    # The next message is seq 2: the repeat took no seq.
    assert (await proto.echo(sender, channel_id, "next")).payload.seq == 2


async def test_ext_client_msg_id_dedup_is_per_user_across_connections(
    proto, channel_id: int, registered
) -> None:
    tab1 = await proto.connect(0, token=registered["token"])
    tab2 = await proto.connect(1, token=registered["token"])
    watcher = await proto.connect(0)
    for client in (watcher, tab1, tab2):
        await proto.joined(client, channel_id)
    for client in (watcher, tab1, tab2):
        await proto.collect(client, 0.2)
    await tab1.send(channel_id, "from tab 1", client_msg_id="shared")
    first = (await messages(watcher, 1))[0]
    await tab2.send(channel_id, "from tab 2", client_msg_id="shared")
    answer = await tab2.expect("chat_send", where=lambda f: f.id == first.id)
    assert answer.payload.content == "from tab 1"
    await asyncio.sleep(0.3)
    await proto.quiet(watcher)


async def test_ext_client_msg_id_is_scoped_to_user_and_channel(proto, channel_id: int) -> None:
    a, b = await room(proto, channel_id)
    other_channel = proto.new_channel()
    await proto.joined(a, other_channel)
    first = await proto.echo(a, channel_id, "a here", client_msg_id="same")
    by_b = await proto.echo(b, channel_id, "b here", client_msg_id="same")
    elsewhere = await proto.echo(a, other_channel, "a there", client_msg_id="same")
    assert len({first.id, by_b.id, elsewhere.id}) == 3
    assert (first.payload.seq, by_b.payload.seq, elsewhere.payload.seq) == (1, 2, 1)


async def test_ext_client_msg_id_up_to_64_chars(proto, channel_id: int) -> None:
    sender, watcher = await room(proto, channel_id)
    longest = "k" * 64
    assert (
        await proto.echo(sender, channel_id, "ok", client_msg_id=longest)
    ).payload.client_msg_id == longest
    await proto.collect(watcher, 0.2)
    await sender.send(channel_id, "too long an id", client_msg_id="k" * 65)
    assert await proto.error(sender) == "Malformed message."
    await proto.quiet(sender, watcher)


async def test_ext_since_seq_resume_and_channel_resumed(proto, channel_id: int) -> None:
    writer, reader = await room(proto, channel_id)
    for i in range(5):
        await proto.echo(writer, channel_id, f"before {i}")
    await messages(reader, 5)
    assert reader.last_seq[channel_id] == 5
    await proto.hang_up(reader)
    await writer.expect("channel_leave")  # settled before the resume
    missed = [await proto.echo(writer, channel_id, f"missed {i}") for i in range(4)]
    back = await proto.connect(1)
    frames = await proto.joined(back, channel_id, since_seq=5)
    assert kinds(frames) == ["chat_send"] * 4 + [
        "channel_resumed",
        "channel_members",
        "channel_join",
    ]
    assert [(f.id, f.payload.seq) for f in frames[:4]] == [(f.id, f.payload.seq) for f in missed]
    assert frames[4].payload == wire.ResumedOut(channel_id=channel_id, recovered=True, last_seq=9)
    # Other members see an ordinary join: no replay, no channel_resumed.
    seen = await proto.collect(writer)
    assert "channel_resumed" not in kinds(seen)
    assert "chat_send" not in kinds(seen)


async def test_ext_since_seq_replays_more_than_the_history_limit(proto, channel_id: int) -> None:
    sent = await proto.fill(channel_id, 56)
    client = await proto.connect()
    frames = await proto.joined(client, channel_id, since_seq=2)
    replay = [f for f in frames if isinstance(f, wire.ChatSendFrame)]
    assert [f.id for f in replay] == [f.id for f in sent[2:]]
    resumed = next(f for f in frames if isinstance(f, wire.ResumedFrame))
    assert resumed.payload == wire.ResumedOut(channel_id=channel_id, recovered=True, last_seq=56)


async def test_ext_since_seq_up_to_date_replays_nothing(proto, channel_id: int) -> None:
    writer, _ = await room(proto, channel_id)
    for i in range(3):
        await proto.echo(writer, channel_id, f"m{i}")
    client = await proto.connect()
    frames = await proto.joined(client, channel_id, since_seq=3)
    assert kinds(frames) == ["channel_resumed", "channel_members", "channel_join"]
    assert frames[0].payload == wire.ResumedOut(channel_id=channel_id, recovered=True, last_seq=3)


async def test_ext_since_seq_too_old_gap_is_flagged(proto, channel_id: int) -> None:
    opener = await proto.connect()
    await proto.joined(opener, channel_id)
    await proto.hang_up(opener)
    total = 5000
    await proto.sql(
        "INSERT INTO messages (id, channel_id, seq, sender_username, sender_is_guest, content)"
        " SELECT gen_random_uuid(), $1, s, 'old-timer', false, 'old ' || s"
        " FROM generate_series(1, $2) AS s",
        channel_id,
        total,
    )
    await proto.sql("UPDATE channels SET last_seq = $2 WHERE id = $1", channel_id, total)
    client = await proto.connect()
    frames = await proto.joined(client, channel_id, since_seq=0)
    replay = [f.payload.seq for f in frames if isinstance(f, wire.ChatSendFrame)]
    resumed = next(f for f in frames if isinstance(f, wire.ResumedFrame))
    assert resumed.payload.last_seq == total
    # recovered says whether the whole gap came: if not, the client must page history.
    assert resumed.payload.recovered == (replay == list(range(1, total + 1)))
    assert resumed.payload.recovered is False  # a gap of 5000 is too old to replay here


async def test_ext_content_length_limit(proto, channel_id: int) -> None:
    sender, watcher = await room(proto, channel_id)
    longest = "é" * MAX_CHARS  # characters, not bytes
    echo = await proto.echo(sender, channel_id, longest)
    assert echo.payload.content == longest
    assert (await messages(watcher, 1))[0].payload.content == longest
    await sender.send(channel_id, "é" * (MAX_CHARS + 1))
    assert await proto.error(sender) == "Message is too long."
    await proto.quiet(sender, watcher)
    assert (await proto.echo(sender, channel_id, "short")).payload.seq == 2


@pytest.mark.parametrize("channel", [INT32_MAX + 1, INT32_MIN - 1, 2**63, -(2**70), "2147483648"])
@pytest.mark.parametrize(
    "frame_type", ["channel_join", "channel_leave", "chat_send", "chat_typing", "channel_history"]
)
async def test_ext_channel_ids_outside_int32_malformed(proto, channel, frame_type: str) -> None:
    client = await proto.connect()
    await client.ws.send(
        json.dumps({"type": frame_type, "payload": {"channel_id": channel, "content": "x"}})
    )
    assert await proto.error(client) == "Malformed message."


@pytest.mark.parametrize("channel", [INT32_MAX, INT32_MIN])
async def test_ext_channel_ids_at_the_int32_bounds_work(proto, channel: int) -> None:
    a, b = await proto.connect(0), await proto.connect(1)
    await proto.joined(a, channel)
    frames = await proto.joined(b, channel)
    assert Counter(kinds(frames))["channel_join"] == 1
    echo = await proto.echo(a, channel, "at the edge")
    assert echo.payload.channel_id == channel
    assert (await b.expect("chat_send")).payload.channel_id == channel
