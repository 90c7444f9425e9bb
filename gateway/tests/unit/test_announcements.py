"""A joiner's broadcasts wait for its own channel_join (gateway.announcements)."""

from __future__ import annotations

import asyncio

from gateway.announcements import Announcements
from justchat import wire
from justchat.wire import UserFrom

ALICE = UserFrom(username="alice", is_guest=False)
BOB = UserFrom(username="bob", is_guest=True)


def join_frame(channel_id: int, user: UserFrom) -> bytes:
    return wire.fresh_frame(wire.JoinFrame, wire.ChannelUserOut(channel_id=channel_id, user=user))


async def test_a_connection_not_waiting_passes_at_once() -> None:
    announcements = Announcements()
    async with asyncio.timeout(0.5):
        await announcements.wait(7, "c1", timeout_s=60)
    assert not announcements


async def test_the_wait_ends_when_its_own_join_is_seen() -> None:
    announcements = Announcements()
    announcements.expect(7, "c1", ALICE)
    waiter = asyncio.create_task(announcements.wait(7, "c1", timeout_s=60))
    await asyncio.sleep(0)
    announcements.seen(join_frame(7, BOB))  # someone else's join
    announcements.seen(join_frame(8, ALICE))  # another channel
    members = wire.fresh_frame(wire.MembersFrame, wire.MembersOut(channel_id=7, members=[ALICE]))
    announcements.seen(members)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    announcements.seen(join_frame(7, ALICE))
    async with asyncio.timeout(1):
        await waiter
    assert not announcements.watching(7)


async def test_a_join_told_to_the_joiner_alone_counts_only_for_that_connection() -> None:
    announcements = Announcements()
    announcements.expect(7, "tab1", ALICE)
    announcements.expect(7, "tab2", ALICE)
    announcements.seen(join_frame(7, ALICE), "tab2")
    async with asyncio.timeout(1):
        await announcements.wait(7, "tab2", timeout_s=60)
    waiter = asyncio.create_task(announcements.wait(7, "tab1", timeout_s=60))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    announcements.seen(join_frame(7, ALICE))
    async with asyncio.timeout(1):
        await waiter


async def test_the_wait_is_bounded_and_then_forgotten() -> None:
    announcements = Announcements()
    announcements.expect(7, "c1", ALICE)
    async with asyncio.timeout(2):
        await announcements.wait(7, "c1", timeout_s=0.05)
    assert not announcements


async def test_undecodable_frames_release_nobody() -> None:
    announcements = Announcements()
    announcements.expect(7, "c1", ALICE)
    announcements.seen(b"not json")
    announcements.seen(b'{"type": "nope"}')
    assert announcements.watching(7)
