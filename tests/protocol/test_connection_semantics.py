"""PROTOCOL.md section 6: several connections per user, each joining independently; leaving with
the last one; a dead gateway's users vanish within the presence TTL."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from justchat import wire
from justchat.client import Client
from justchat.settings import Settings
from justchat.stack import Stack, StackConfig

PRESENCE_TTL_S = Settings().presence_ttl_s  # the protocol stacks run at the defaults


def names(frame: wire.MembersFrame) -> list[str]:
    return sorted(m.username for m in frame.payload.members)


async def test_connection_semantics_multi_connection_leave_only_with_last(
    proto, channel_id: int, registered
) -> None:
    other_channel = proto.new_channel()
    watcher_a, watcher_b = await proto.connect(0), await proto.connect(1)
    await proto.joined(watcher_a, channel_id)
    await proto.joined(watcher_b, other_channel)
    tab1 = await proto.connect(0, token=registered["token"])
    tab2 = await proto.connect(1, token=registered["token"])
    await proto.joined(tab1, channel_id)
    await proto.joined(tab1, other_channel)
    await proto.joined(tab2, channel_id)
    await proto.collect(watcher_a, 0.3)
    await proto.collect(watcher_b, 0.3)
    # tab1 was the user's only connection in other_channel: closing it is a leave there only.
    await proto.hang_up(tab1)
    members = await watcher_b.expect("channel_members")
    assert names(members) == [watcher_b.user.username]
    leave = await watcher_b.recv()
    assert isinstance(leave, wire.LeaveFrame)
    assert leave.payload.user.username == registered["username"]
    await proto.quiet(watcher_a)
    # tab2 is the last connection in channel_id.
    await proto.hang_up(tab2)
    members = await watcher_a.expect("channel_members")
    assert names(members) == [watcher_a.user.username]
    leave = await watcher_a.recv()
    assert isinstance(leave, wire.LeaveFrame)
    assert leave.payload == wire.ChannelUserOut(
        channel_id=channel_id, user=wire.UserFrom(username=registered["username"], is_guest=False)
    )


async def test_connection_semantics_leave_by_one_connection_keeps_the_user(
    proto, channel_id: int, registered
) -> None:
    watcher = await proto.connect(0)
    tab1 = await proto.connect(0, token=registered["token"])
    tab2 = await proto.connect(1, token=registered["token"])
    for client in (watcher, tab1, tab2):
        await proto.joined(client, channel_id)
    await proto.collect(watcher, 0.3)
    await tab1.leave(channel_id)
    await proto.quiet(watcher)
    # tab2 still gets the channel's messages, tab1 no longer does.
    await proto.echo(watcher, channel_id, "still there?")
    assert (await tab2.expect("chat_send")).payload.content == "still there?"
    await proto.quiet(tab1)
    await tab1.send(channel_id, "x")
    assert await proto.error(tab1) == "You must join this channel first"


async def test_connection_semantics_connections_join_independently(
    proto, channel_id: int, registered
) -> None:
    tab1 = await proto.connect(0, token=registered["token"])
    tab2 = await proto.connect(1, token=registered["token"])
    await proto.joined(tab1, channel_id)
    await proto.echo(tab1, channel_id, "only tab1 is in")
    await proto.quiet(tab2)
    for frame_type in ("chat_send", "chat_typing", "channel_leave"):
        await tab2.send_frame(frame_type, {"channel_id": channel_id, "content": "x"})
        assert await proto.error(tab2) == "You must join this channel first"


async def test_connection_semantics_closing_a_connection_leaves_its_channels(
    proto, channel_id: int
) -> None:
    other_channel = proto.new_channel()
    watcher, leaver = await proto.connect(0), await proto.connect(1)
    for channel in (channel_id, other_channel):
        await proto.joined(watcher, channel)
        await proto.joined(leaver, channel)
    await proto.collect(watcher, 0.3)
    await proto.hang_up(leaver)
    frames = [await watcher.recv() for _ in range(4)]
    for channel in (channel_id, other_channel):
        mine = [f for f in frames if f.payload.channel_id == channel]
        assert [f.__struct_config__.tag for f in mine] == ["channel_members", "channel_leave"]
        assert names(mine[0]) == [watcher.user.username]
        assert mine[1].payload.user == leaver.user


@pytest.fixture(scope="module")
async def doomed_stack(
    tmp_path_factory: pytest.TempPathFactory,
    make_stack_config: Callable[..., StackConfig],
    redis_url: str,
    database_url: str,
    redis_prefix: str,
    jwt_secret: str,
) -> AsyncIterator[Stack]:
    """A stack of this module's own: one of its gateways gets killed."""
    async with Stack(
        make_stack_config(
            tmp_path_factory.mktemp("doomed-stack"),
            redis_url=redis_url,
            database_url=database_url,
            redis_prefix=f"{redis_prefix}d{uuid.uuid4().hex[:8]}:",
            jwt_secret=jwt_secret,
        )
    ) as stack:
        yield stack


@pytest.mark.slow
async def test_connection_semantics_dead_gateway_users_vanish_within_ttl(
    doomed_stack: Stack, channel_id: int
) -> None:
    clients: list[Client] = []
    try:
        watcher = await Client.connect(doomed_stack.gateway_urls[0])
        doomed = [await Client.connect(doomed_stack.gateway_urls[1]) for _ in range(2)]
        clients += [watcher, *doomed]
        for client in clients:
            await client.join(channel_id)
            await client.expect("channel_join", where=lambda f, c=client: f.payload.user == c.user)
        while True:  # let the joins settle
            try:
                await watcher.recv(0.5)
            except TimeoutError:
                break
        gateway = doomed_stack.service("gateway-1")
        assert gateway.process is not None
        killed_at = time.monotonic()
        os.kill(gateway.process.pid, signal.SIGKILL)
        left: list[str] = []
        last_members: list[str] = []
        deadline = killed_at + PRESENCE_TTL_S + 5
        while len(left) < len(doomed) and time.monotonic() < deadline:
            try:
                frame = await watcher.recv(max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(frame, wire.LeaveFrame):
                left.append(frame.payload.user.username)
            elif isinstance(frame, wire.MembersFrame):
                last_members = names(frame)
        elapsed = time.monotonic() - killed_at
        assert sorted(left) == sorted(c.user.username for c in doomed)
        assert last_members == [watcher.user.username]
        assert elapsed <= PRESENCE_TTL_S + 2.5, elapsed
    finally:
        for client in clients:
            await client.close()
