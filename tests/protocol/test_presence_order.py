"""PROTOCOL.md section 4 at the settings users get, where member lists are coalesced
(JUSTCHAT_MEMBERS_INTERVAL_MS=1000): coalescing may delay frames, never reorder them.

For every member: ``channel_members`` comes before the ``channel_join`` or ``channel_leave`` it
explains (a join's list names the user, a leave's does not), on joins, leaves and kicks alike;
and no list arrives that explains nothing, so a joiner receives each list once. Each test makes
more changes in quick succession than a quiet channel answers at once, so some wait for a window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from justchat import wire
from justchat.client import Client
from justchat.settings import Settings

INTERVAL_S: Final = Settings().members_interval_ms / 1000
SETTLE_S: Final = INTERVAL_S + 1.0  # a held change is sent within one interval
WAIT_S: Final = 15.0


def names(frame: wire.MembersFrame) -> set[str]:
    return {m.username for m in frame.payload.members}


def presence(frames: list[Any], channel_id: int) -> list[Any]:
    """The channel's member lists, joins and leaves, in the order received."""
    kinds = (wire.MembersFrame, wire.JoinFrame, wire.LeaveFrame)
    return [f for f in frames if isinstance(f, kinds) and f.payload.channel_id == channel_id]


def check_order(frames: list[Any], channel_id: int) -> list[tuple[str, str]]:
    """Assert the rule over one member's frames; return its joins and leaves, in order."""
    latest: set[str] | None = None
    explained = True
    seen: list[tuple[str, str]] = []
    for frame in presence(frames, channel_id):
        if isinstance(frame, wire.MembersFrame):
            assert explained, f"a list that explains nothing (a duplicate): {frames}"
            latest, explained = names(frame), False
            continue
        who = frame.payload.user.username
        kind = "join" if isinstance(frame, wire.JoinFrame) else "leave"
        assert latest is not None, f"{kind} of {who} before any list: {frames}"
        assert (who in latest) == (kind == "join"), f"{kind} of {who} after the list {latest}"
        seen.append((kind, who))
        explained = True
    assert explained, f"the last list explains nothing (a duplicate): {frames}"
    return seen


def last_list(frames: list[Any], channel_id: int) -> set[str]:
    lists = [f for f in presence(frames, channel_id) if isinstance(f, wire.MembersFrame)]
    assert lists, frames
    return names(lists[-1])


async def watch(
    proto: Any, client: Client, done: Callable[[list[Any]], bool], frames: list[Any] | None = None
) -> list[Any]:
    """Frames until ``done`` holds for them, then whatever else comes within ``SETTLE_S``."""
    frames = list(frames or [])
    deadline = time.monotonic() + WAIT_S
    while not done(frames):
        left = deadline - time.monotonic()
        assert left > 0, f"{client.user.username} waited in vain; got {frames}"
        frames.append(await client.recv(left))
    return frames + await proto.collect(client, SETTLE_S)


async def settled(proto: Any, *clients: Client) -> None:
    """Let any held change arrive, so a test starts from a quiet channel."""
    await asyncio.gather(*(proto.collect(c, SETTLE_S) for c in clients))


def saw(channel_id: int, *events: tuple[str, str]) -> Callable[[list[Any]], bool]:
    def done(frames: list[Any]) -> bool:
        got = []
        for f in presence(frames, channel_id):
            if isinstance(f, wire.JoinFrame | wire.LeaveFrame):
                kind = "join" if isinstance(f, wire.JoinFrame) else "leave"
                got.append((kind, f.payload.user.username))
        return all(event in got for event in events)

    return done


async def test_joins_in_quick_succession_follow_their_lists(proto, channel_id: int) -> None:
    first = await proto.connect()
    others = [await proto.connect() for _ in range(5)]
    before = await proto.joined(first, channel_id)
    # All within the first's interval: more than a quiet channel answers at once.
    joined = await asyncio.gather(*(proto.joined(c, channel_id) for c in others))
    everyone = {first.user.username} | {c.user.username for c in others}

    def complete(frames: list[Any]) -> bool:
        listed = [f for f in presence(frames, channel_id) if isinstance(f, wire.MembersFrame)]
        return bool(listed) and names(listed[-1]) == everyone

    seen_by_first = await watch(proto, first, complete, before)
    events = check_order(seen_by_first, channel_id)
    assert events[0] == ("join", first.user.username)
    assert sorted(events[1:]) == sorted(("join", c.user.username) for c in others)
    for client, own in zip(others, joined, strict=True):
        frames = await watch(proto, client, complete, own)
        events = check_order(frames, channel_id)  # the joiner's list comes once, before its join
        assert ("join", client.user.username) in events
        assert last_list(frames, channel_id) == everyone


async def test_leaves_in_quick_succession_follow_their_lists(proto, channel_id: int) -> None:
    watcher = await proto.connect()
    leavers = [await proto.connect() for _ in range(4)]
    for client in (watcher, *leavers):
        await proto.joined(client, channel_id)
    await settled(proto, watcher, *leavers)
    for client in leavers:
        await client.leave(channel_id)
    expected = [("leave", c.user.username) for c in leavers]
    frames = await watch(proto, watcher, saw(channel_id, *expected))
    assert sorted(check_order(frames, channel_id)) == sorted(expected)  # two gateways: any order
    assert last_list(frames, channel_id) == {watcher.user.username}


async def test_a_reload_inside_a_window_still_follows_its_lists(proto, channel_id: int) -> None:
    """Leave and join again within one interval, as a page reload does."""
    watcher = await proto.connect()
    reloader = await proto.connect()
    arrivals = [await proto.connect() for _ in range(3)]
    for client in (watcher, reloader):
        await proto.joined(client, channel_id)
    await settled(proto, watcher, reloader)
    for client in arrivals:  # spend the quiet channel's credit
        await client.join(channel_id)
    await reloader.leave(channel_id)
    await reloader.join(channel_id)
    everyone = {c.user.username for c in (watcher, reloader, *arrivals)}
    expected = [("leave", reloader.user.username), ("join", reloader.user.username)]
    expected += [("join", c.user.username) for c in arrivals]
    frames = await watch(proto, watcher, saw(channel_id, *expected))
    events = check_order(frames, channel_id)
    assert sorted(events) == sorted(expected)
    assert events.index(expected[0]) < events.index(expected[1])
    assert last_list(frames, channel_id) == everyone


async def test_a_kick_inside_a_window_follows_its_list(proto, channel_id: int) -> None:
    staff = await proto.connect(0, token=(await proto.staff()).token)
    target = await proto.connect(1, token=(await proto.account()).token)
    watcher = await proto.connect(0)
    arrivals = [await proto.connect() for _ in range(3)]
    for client in (staff, target, watcher):
        await proto.joined(client, channel_id)
    await settled(proto, staff, target, watcher)
    for client in arrivals:  # spend the quiet channel's credit
        await client.join(channel_id)
    await staff.send_frame(
        "chat_kick", {"channel_id": channel_id, "target": target.user.username, "reason": "x"}
    )
    expected = [("leave", target.user.username)] + [("join", c.user.username) for c in arrivals]
    for client in (staff, watcher):
        frames = await watch(proto, client, saw(channel_id, *expected))
        assert any(isinstance(f, wire.KickFrame) for f in frames)
        assert sorted(check_order(frames, channel_id)) == sorted(expected)
        assert target.user.username not in last_list(frames, channel_id)


async def test_a_joiners_first_message_comes_after_its_join(proto, channel_id: int) -> None:
    """A held join must not be overtaken by the joiner's own first message (which does not go
    through presence-service): every member sees the join, then the message."""
    watcher = await proto.connect(0)
    await proto.joined(watcher, channel_id)
    await settled(proto, watcher)
    for client in [await proto.connect() for _ in range(5)]:  # spend the quiet channel's credit
        await client.join(channel_id)
    talker = await proto.connect(1)
    await talker.join(channel_id)
    await talker.send(channel_id, "hello at once")  # the gateway handles it right after the join

    def said(frames: list[Any]) -> bool:
        return any(isinstance(f, wire.ChatSendFrame) for f in frames)

    for client in (watcher, talker):
        frames = await watch(proto, client, said)
        order = [
            type(f).__name__
            for f in frames
            if isinstance(f, wire.ChatSendFrame)
            or (isinstance(f, wire.JoinFrame) and f.payload.user == talker.user)
        ]
        assert order == ["JoinFrame", "ChatSendFrame"], frames
