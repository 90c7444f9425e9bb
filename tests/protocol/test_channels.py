"""PROTOCOL.md section 4: channel_join, channel_leave and channel_members."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from justchat import wire

HISTORY_LIMIT = 50  # JUSTCHAT_HISTORY_LIMIT's default; the session stack keeps it
ROUNDS = 15  # of the join-during-sends race: a broken join shows within a few
SENDERS = 8
PER_SENDER = 15  # under the default send burst (JUSTCHAT_SEND_BURST=20)


def kinds(frames: list) -> list[str]:
    return [f.__struct_config__.tag for f in frames]


def names(frame: wire.MembersFrame) -> list[str]:
    return [m.username for m in frame.payload.members]


async def test_join_creates_the_channel_on_first_join(proto, channel_id: int) -> None:
    first, other = await proto.connect(0), await proto.connect(1)
    await other.typing(channel_id)
    assert await proto.error(other) == "Channel does not exist."
    frames = await proto.joined(first, channel_id)
    assert kinds(frames) == ["channel_members", "channel_join"]  # new: no history
    await other.typing(channel_id)
    assert await proto.error(other) == "You must join this channel first"


async def test_join_order_history_then_members_then_join(proto, channel_id: int) -> None:
    member = await proto.connect(0)
    await proto.joined(member, channel_id)
    sent = [await proto.echo(member, channel_id, text) for text in ("one", "two", "three")]
    joiner = await proto.connect(1)
    frames = await proto.joined(joiner, channel_id)
    assert kinds(frames) == ["chat_send"] * 3 + ["channel_members", "channel_join"]
    assert [f.payload.content for f in frames[:3]] == ["one", "two", "three"]
    assert [f.id for f in frames[:3]] == [f.id for f in sent]
    members, join = frames[3], frames[4]
    assert members.payload.channel_id == channel_id
    assert Counter(names(members)) == Counter([member.user.username, joiner.user.username])
    assert join.payload == wire.ChannelUserOut(channel_id=channel_id, user=joiner.user)
    # The existing member: the new list, then the join; no history.
    seen = [await member.recv(), await member.recv()]
    assert kinds(seen) == ["channel_members", "channel_join"]
    assert Counter(names(seen[0])) == Counter(names(members))
    assert seen[1].payload == join.payload
    await proto.quiet(member, joiner)


async def test_join_history_is_the_last_50_oldest_first(proto, channel_id: int) -> None:
    sent = await proto.fill(channel_id, HISTORY_LIMIT + 6)
    joiner = await proto.connect()
    frames = await proto.joined(joiner, channel_id)
    # (The fillers' leaves may interleave; the order of a join has its own test.)
    history = [f for f in frames if isinstance(f, wire.ChatSendFrame)]
    assert kinds(frames[: len(history)]) == ["chat_send"] * HISTORY_LIMIT
    assert [f.payload.seq for f in history] == list(range(7, HISTORY_LIMIT + 7))
    assert [(f.id, f.payload.content) for f in history] == [
        (f.id, f.payload.content) for f in sent[6:]
    ]


async def test_join_history_carries_the_senders_real_is_guest(
    proto, channel_id: int, registered
) -> None:
    member = await proto.connect(0, token=registered["token"])
    guest = await proto.connect(1)
    await proto.joined(member, channel_id)
    await proto.joined(guest, channel_id)
    await proto.echo(member, channel_id, "from a member")
    await proto.echo(guest, channel_id, "from a guest")
    joiner = await proto.connect()
    history = (await proto.joined(joiner, channel_id))[:2]
    assert [(f.payload.content, f.payload.sender) for f in history] == [
        ("from a member", wire.UserFrom(username=registered["username"], is_guest=False)),
        ("from a guest", wire.UserFrom(username=guest.user.username, is_guest=True)),
    ]


async def test_join_during_sends_misses_duplicates_and_reorders_nothing(proto) -> None:
    # A race: each round is a burst of sends with joins landing in the middle of it.
    for _ in range(ROUNDS):
        channel_id = proto.new_channel()
        senders = [await proto.connect(i % 2) for i in range(SENDERS)]
        await asyncio.gather(*(proto.joined(sender, channel_id) for sender in senders))
        total = PER_SENDER * len(senders)

        async def blast(sender, channel_id: int = channel_id) -> None:
            for i in range(PER_SENDER):
                await sender.send(channel_id, f"{sender.user.username}-{i}")
                if i % 5 == 0:
                    await asyncio.sleep(0.005)

        async def join_late(delay: float, channel_id: int = channel_id, total: int = total):
            await asyncio.sleep(delay)
            joiner = await proto.connect()
            await joiner.join(channel_id)
            # Messages only: waiting for this join's member list (coalesced) would add nothing.
            seqs: list[int] = []
            while not seqs or max(seqs) < total:
                frame = await joiner.recv()
                assert not isinstance(frame, wire.ErrorFrame), frame
                if isinstance(frame, wire.ChatSendFrame):
                    seqs.append(frame.payload.seq)
            late = await proto.collect(joiner, 0.2)  # nothing twice, even late
            return seqs + [f.payload.seq for f in late if isinstance(f, wire.ChatSendFrame)]

        results = await asyncio.gather(
            *(blast(s) for s in senders), *(join_late(0.006 * i) for i in range(16))
        )
        for seqs in results[len(senders) :]:
            # From the first message it got (history or live) to the last: each once, in order.
            assert seqs == list(range(seqs[0], total + 1)), seqs
        await proto.close()


async def test_leave_remaining_get_members_then_leave_and_leaver_nothing(
    proto, channel_id: int
) -> None:
    stay, go = await proto.connect(0), await proto.connect(1)
    await proto.joined(stay, channel_id)
    await proto.joined(go, channel_id)
    await stay.expect("channel_join", where=lambda f: f.payload.user == go.user)
    await go.leave(channel_id)
    members = await stay.recv()
    assert isinstance(members, wire.MembersFrame)
    assert names(members) == [stay.user.username]
    leave = await stay.recv()
    assert isinstance(leave, wire.LeaveFrame)
    assert leave.payload == wire.ChannelUserOut(channel_id=channel_id, user=go.user)
    await proto.quiet(go, stay)


@pytest.mark.parametrize("frame_type", ["channel_leave", "chat_send", "chat_typing"])
async def test_left_channel_needs_a_new_join(proto, channel_id: int, frame_type: str) -> None:
    client = await proto.connect()
    await proto.joined(client, channel_id)
    await client.leave(channel_id)
    await client.send_frame(frame_type, {"channel_id": channel_id, "content": "x"})
    assert await proto.error(client) == "You must join this channel first"
    await proto.joined(client, channel_id)  # and a new join works


async def test_leave_of_a_missing_channel_or_by_a_non_member(proto, channel_id: int) -> None:
    member, outsider = await proto.connect(0), await proto.connect(1)
    await outsider.leave(channel_id)
    assert await proto.error(outsider) == "Channel does not exist."
    await proto.joined(member, channel_id)
    await outsider.leave(channel_id)
    assert await proto.error(outsider) == "You must join this channel first"
    await proto.quiet(member)


async def test_members_lists_each_user_once(proto, channel_id: int, registered) -> None:
    watcher = await proto.connect(0)
    await proto.joined(watcher, channel_id)
    tabs = [await proto.connect(i % 2, token=registered["token"]) for i in range(3)]
    lists = []
    for tab in tabs:
        frames = await proto.joined(tab, channel_id)
        lists.append(frames[-2])
    for members in lists:
        assert isinstance(members, wire.MembersFrame)
        assert Counter(names(members)) == Counter([watcher.user.username, registered["username"]])
    # The watcher hears of the user once, however many of its connections joined.
    seen = await proto.collect(watcher)
    joins = [f for f in seen if isinstance(f, wire.JoinFrame)]
    assert [f.payload.user.username for f in joins] == [registered["username"]]
    for members in (f for f in seen if isinstance(f, wire.MembersFrame)):
        assert sorted(names(members)) == sorted([watcher.user.username, registered["username"]])
    # A newcomer's full list has everyone once.
    guest = await proto.connect(1)
    frames = await proto.joined(guest, channel_id)
    assert Counter(names(frames[-2])) == Counter(
        [watcher.user.username, registered["username"], guest.user.username]
    )


async def test_members_payload_is_the_channel_and_the_full_list(proto, channel_id: int) -> None:
    clients = [await proto.connect(i % 2) for i in range(4)]
    for client in clients:
        await proto.joined(client, channel_id)
    last = await proto.collect(clients[0])
    members = [f for f in last if isinstance(f, wire.MembersFrame)][-1]
    assert members.payload.channel_id == channel_id
    assert sorted(names(members)) == sorted(c.user.username for c in clients)
    assert all(m.is_guest for m in members.payload.members)


@pytest.mark.parametrize("frame_type", ["channel_members", "error", "channel_resumed"])
async def test_server_only_types_are_unknown_from_clients(
    proto, channel_id: int, frame_type: str
) -> None:
    client = await proto.connect()
    await proto.joined(client, channel_id)
    await client.send_frame(frame_type, {"channel_id": channel_id, "members": [], "detail": "x"})
    assert await proto.error(client) == "Invalid message format"
    await proto.quiet(client)


async def test_join_failure_answers_error_and_joins_nothing(proto) -> None:
    channel_id = proto.new_channel()
    constraint = f"protocol_test_{uuid.uuid4().hex[:12]}"
    # PostgreSQL refuses to create exactly this channel: the join cannot be stored.
    await proto.sql(
        f"ALTER TABLE channels ADD CONSTRAINT {constraint} CHECK (id <> {channel_id}) NOT VALID"
    )
    try:
        client = await proto.connect(1)
        await client.join(channel_id)
        assert await proto.error(client) == "Error trying to join the channel."
        await proto.quiet(client)
        await client.typing(channel_id)
        assert await proto.error(client) == "Channel does not exist."
    finally:
        await proto.sql(f"ALTER TABLE channels DROP CONSTRAINT {constraint}")
    # Once the database accepts it, the same connection joins as usual.
    frames = await proto.joined(client, channel_id)
    assert kinds(frames) == ["channel_members", "channel_join"]
    assert names(frames[0]) == [client.user.username]
