"""PROTOCOL.md sections 4 and 5: chat_kick, chat_mute, chat_unmute, chat_ban, chat_unban, the roles
that may use them, and the last step of the precondition order (not muted)."""

from __future__ import annotations

import asyncio
import time

import pytest

from justchat import wire

NO_PERMISSION = "You don't have permission to run this command."
MUTED = "You are muted in this channel."
BANNED = "You are banned from this channel."
NOT_MEMBER = "You must join this channel first"


def kinds(frames: list) -> list[str]:
    return [f.__struct_config__.tag for f in frames]


async def settle(proto, *clients) -> None:
    for client in clients:
        await proto.collect(client, 0.2)


async def room(proto, channel_id: int, role: str = "moderator") -> tuple:
    """A staff member, a registered target and a guest watcher, all in the channel."""
    staff = await proto.connect(0, token=(await proto.staff(role)).token)
    target = await proto.connect(1, token=(await proto.account()).token)
    watcher = await proto.connect(0)
    for client in (staff, target, watcher):
        await proto.joined(client, channel_id)
    await settle(proto, staff, target, watcher)
    return staff, target, watcher


async def order(client, action: str, channel_id: int, target: str, **extra) -> None:
    await client.send_frame(f"chat_{action}", {"channel_id": channel_id, "target": target, **extra})


async def can_send(client, channel_id: int, text: str) -> bool:
    """Send; True once it is broadcast back, False if refused as muted."""
    await client.send(channel_id, text)
    while True:
        frame = await client.recv()
        if isinstance(frame, wire.ErrorFrame):
            assert frame.payload.detail == MUTED, frame
            return False
        if isinstance(frame, wire.ChatSendFrame) and frame.payload.content == text:
            return True


async def wait_until_can_send(client, channel_id: int, deadline_s: float) -> float:
    """Retry a send until it goes through; returns when it did (monotonic)."""
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while not await can_send(client, channel_id, f"attempt {attempt}"):
        assert time.monotonic() < deadline, "still muted"
        attempt += 1
        await asyncio.sleep(0.2)
    return time.monotonic()


# -- roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["moderator", "admin"])
@pytest.mark.parametrize("action", ["kick", "mute", "unmute", "ban", "unban"])
async def test_moderation_allowed_for_moderator_and_admin(
    proto, channel_id: int, role: str, action: str
) -> None:
    staff, target, watcher = await room(proto, channel_id, role)
    await order(staff, action, channel_id, target.user.username, reason="rules")
    for client in (staff, watcher):
        frame = await client.recv()
        assert kinds([frame]) == [f"chat_{action}"], frame
        assert frame.payload.channel_id == channel_id
        assert frame.payload.target == target.user.username


@pytest.mark.parametrize("action", ["kick", "mute", "unmute", "ban", "unban"])
async def test_moderation_refused_for_users_and_guests(proto, channel_id: int, action: str) -> None:
    staff, target, watcher = await room(proto, channel_id)
    for client in (target, watcher):  # a plain user and a guest
        await order(client, action, channel_id, staff.user.username)
        assert await proto.error(client) == NO_PERMISSION
    await proto.quiet(staff, target, watcher)


async def test_moderation_needs_membership_even_for_staff(proto, channel_id: int) -> None:
    staff = await proto.connect(0, token=(await proto.staff("admin")).token)
    member = await proto.connect(1)
    await proto.joined(member, channel_id)
    await order(staff, "kick", channel_id, member.user.username)
    assert await proto.error(staff) == NOT_MEMBER
    await proto.quiet(member)


# -- kick ----------------------------------------------------------------------------------------


async def test_kick_broadcast_to_all_then_target_removed(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    await order(staff, "kick", channel_id, target.user.username, reason="spam")
    kick = wire.KickOut(channel_id=channel_id, target=target.user.username, reason="spam")
    got = await target.recv()
    assert isinstance(got, wire.KickFrame)
    assert got.payload == kick
    for client in (staff, watcher):
        frames = [await client.recv() for _ in range(3)]
        assert kinds(frames) == ["chat_kick", "channel_members", "channel_leave"]
        assert frames[0].payload == kick
        assert target.user not in frames[1].payload.members
        assert frames[2].payload == wire.ChannelUserOut(channel_id=channel_id, user=target.user)
    await proto.quiet(target)
    await target.send(channel_id, "still here?")
    assert await proto.error(target) == NOT_MEMBER
    await proto.quiet(staff, watcher)
    await proto.joined(target, channel_id)  # a kick is not a ban


async def test_kick_reason_is_optional(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    await order(staff, "kick", channel_id, target.user.username)
    frame = await watcher.recv()
    assert isinstance(frame, wire.KickFrame)
    assert frame.payload.target == target.user.username
    assert frame.payload.reason in (None, "")


async def test_kick_removes_every_connection_of_the_target(
    proto, channel_id: int, registered
) -> None:
    staff, _, watcher = await room(proto, channel_id)
    tabs = [await proto.connect(i, token=registered["token"]) for i in (0, 1)]
    for tab in tabs:
        await proto.joined(tab, channel_id)
    await settle(proto, staff, watcher, *tabs)
    await order(staff, "kick", channel_id, registered["username"])
    for tab in tabs:
        assert isinstance(await tab.recv(), wire.KickFrame)
    frames = [await watcher.recv() for _ in range(3)]
    assert kinds(frames) == ["chat_kick", "channel_members", "channel_leave"]
    await proto.quiet(watcher, *tabs)
    for tab in tabs:
        await tab.send(channel_id, "x")
        assert await proto.error(tab) == NOT_MEMBER


async def test_kick_of_a_non_member_does_nothing(proto, channel_id: int, registered) -> None:
    staff, target, watcher = await room(proto, channel_id)
    for name in (registered["username"], "NoSuchUser"):
        await order(staff, "kick", channel_id, name, reason="absent")
    await proto.quiet(staff, target, watcher, seconds=1.0)


# -- mute ----------------------------------------------------------------------------------------


async def test_mute_broadcast_then_send_and_typing_refused(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    await order(staff, "mute", channel_id, target.user.username, duration=60, reason="calm down")
    expected = wire.MuteOut(
        channel_id=channel_id, target=target.user.username, duration=60, reason="calm down"
    )
    for client in (staff, target, watcher):
        frame = await client.recv()
        assert isinstance(frame, wire.MuteFrame)
        assert frame.payload == expected
    await target.send(channel_id, "let me talk")
    assert await proto.error(target) == MUTED
    await target.typing(channel_id)
    assert await proto.error(target) == MUTED
    await proto.quiet(staff, watcher)
    # Still a member: messages keep arriving.
    await proto.echo(watcher, channel_id, "you can still read")
    assert (await target.expect("chat_send")).payload.content == "you can still read"


async def test_mute_applies_on_every_connection_and_gateway(
    proto, channel_id: int, registered
) -> None:
    staff, _, watcher = await room(proto, channel_id)
    tabs = [await proto.connect(i, token=registered["token"]) for i in (0, 1)]
    for tab in tabs:
        await proto.joined(tab, channel_id)
    await settle(proto, staff, watcher, *tabs)
    await order(staff, "mute", channel_id, registered["username"])
    for tab in tabs:
        await tab.expect("chat_mute")
        await tab.send(channel_id, "x")
        assert await proto.error(tab) == MUTED


async def test_mute_survives_reconnect(proto, channel_id: int, registered) -> None:
    staff, _, _ = await room(proto, channel_id)
    target = await proto.connect(1, token=registered["token"])
    await proto.joined(target, channel_id)
    await order(staff, "mute", channel_id, registered["username"])
    await target.expect("chat_mute")
    await proto.hang_up(target)
    again = await proto.connect(0, token=registered["token"])
    await proto.joined(again, channel_id)
    await again.send(channel_id, "new connection, same user")
    assert await proto.error(again) == MUTED


@pytest.mark.parametrize("duration", ["absent", None, 0])
async def test_mute_duration_null_absent_or_zero_is_indefinite(
    proto, channel_id: int, duration
) -> None:
    staff, target, watcher = await room(proto, channel_id)
    extra = {} if duration == "absent" else {"duration": duration}
    await order(staff, "mute", channel_id, target.user.username, **extra)
    frame = await watcher.recv()
    assert isinstance(frame, wire.MuteFrame)
    assert frame.payload.duration in (None, 0)
    await target.expect("chat_mute")
    await asyncio.sleep(2.5)
    assert not await can_send(target, channel_id, "later")


async def test_mute_expires_by_itself(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    muted_at = time.monotonic()
    await order(staff, "mute", channel_id, target.user.username, duration="2")  # numeric string
    frame = await watcher.recv()
    assert isinstance(frame, wire.MuteFrame)
    assert frame.payload.duration == 2
    await target.expect("chat_mute")
    assert not await can_send(target, channel_id, "too soon")
    free_at = await wait_until_can_send(target, channel_id, 8)
    assert 1.5 <= free_at - muted_at <= 5, free_at - muted_at


async def test_mute_twice_does_not_break_anything(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    await order(staff, "mute", channel_id, target.user.username, reason="once")
    await order(staff, "mute", channel_id, target.user.username, duration=600, reason="twice")
    for client in (staff, watcher):
        frames = [await client.recv(), await client.recv()]
        assert kinds(frames) == ["chat_mute", "chat_mute"]
    await settle(proto, target)
    assert not await can_send(target, channel_id, "muted")
    await order(staff, "unmute", channel_id, target.user.username)
    await target.expect("chat_unmute")
    assert await can_send(target, channel_id, "free")


async def test_unmute_broadcast_and_clears_the_mute(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    await order(staff, "mute", channel_id, target.user.username, reason="x")
    await settle(proto, staff, target, watcher)
    await order(staff, "unmute", channel_id, target.user.username)
    expected = wire.MuteOut(
        channel_id=channel_id, target=target.user.username, duration=None, reason=""
    )
    for client in (staff, target, watcher):
        frame = await client.recv()
        assert isinstance(frame, wire.UnmuteFrame)
        assert frame.payload == expected
    assert await can_send(target, channel_id, "free again")
    await target.typing(channel_id)
    assert isinstance(await watcher.expect("chat_typing"), wire.TypingFrame)


async def test_mute_with_a_negative_duration_is_malformed(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    await order(staff, "mute", channel_id, target.user.username, duration=-5)
    assert await proto.error(staff) == "Malformed message."
    await proto.quiet(target, watcher)


@pytest.mark.slow
async def test_mute_survives_a_restart(proto, channel_id: int, registered) -> None:
    staff, _, _ = await room(proto, channel_id)
    target = await proto.connect(1, token=registered["token"])
    await proto.joined(target, channel_id)
    await order(staff, "mute", channel_id, registered["username"])
    await target.expect("chat_mute")
    await proto.close()  # nobody connected while everything restarts
    await proto.stack.restart()
    again = await proto.connect(0, token=registered["token"])
    await proto.joined(again, channel_id)
    await again.send(channel_id, "after the restart")
    assert await proto.error(again) == MUTED


# -- precondition order: permission before mute, membership before mute --------------------------


async def test_precondition_order_channel_then_member_then_permission_then_mute(
    proto, channel_id: int
) -> None:
    staff, target, _ = await room(proto, channel_id)
    await order(staff, "mute", channel_id, target.user.username)
    await target.expect("chat_mute")
    # Muted and without permission: the permission error comes first.
    await order(target, "kick", channel_id, staff.user.username)
    assert await proto.error(target) == NO_PERMISSION
    # Muted and a member: the mute error.
    await target.send(channel_id, "x")
    assert await proto.error(target) == MUTED
    # Muted but no longer a member: the membership error.
    await target.leave(channel_id)
    await target.send(channel_id, "x")
    assert await proto.error(target) == NOT_MEMBER
    # And a channel that does not exist comes before everything.
    await target.send(proto.new_channel(), "x")
    assert await proto.error(target) == "Channel does not exist."


# -- ban -----------------------------------------------------------------------------------------


async def test_ban_removes_and_join_is_refused_until_unban(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    await order(staff, "ban", channel_id, target.user.username, reason="out")
    expected = wire.MuteOut(
        channel_id=channel_id, target=target.user.username, duration=None, reason="out"
    )
    got = await target.recv()
    assert isinstance(got, wire.BanFrame)
    assert got.payload == expected
    for client in (staff, watcher):
        frames = [await client.recv() for _ in range(3)]
        assert kinds(frames) == ["chat_ban", "channel_members", "channel_leave"]
        assert frames[0].payload == expected
        assert target.user not in frames[1].payload.members
        assert frames[2].payload.user == target.user
    await proto.quiet(target)
    await target.send(channel_id, "x")
    assert await proto.error(target) == NOT_MEMBER
    await target.join(channel_id)
    assert await proto.error(target) == BANNED
    await proto.quiet(target, staff, watcher)  # no history, no members, no join
    await order(staff, "unban", channel_id, target.user.username)
    for client in (staff, watcher):
        frame = await client.recv()
        assert isinstance(frame, wire.UnbanFrame)
        assert frame.payload == wire.MuteOut(
            channel_id=channel_id, target=target.user.username, duration=None, reason=""
        )
    await asyncio.sleep(0.3)
    await proto.joined(target, channel_id)


async def test_ban_survives_reconnect(proto, channel_id: int, registered) -> None:
    staff, _, _ = await room(proto, channel_id)
    target = await proto.connect(1, token=registered["token"])
    await proto.joined(target, channel_id)
    await order(staff, "ban", channel_id, registered["username"])
    await target.expect("chat_ban")
    await proto.hang_up(target)
    again = await proto.connect(0, token=registered["token"])
    await again.join(channel_id)
    assert await proto.error(again) == BANNED


async def test_ban_expires_by_itself(proto, channel_id: int) -> None:
    staff, target, watcher = await room(proto, channel_id)
    banned_at = time.monotonic()
    await order(staff, "ban", channel_id, target.user.username, duration=2)
    frame = await watcher.recv()
    assert isinstance(frame, wire.BanFrame)
    assert frame.payload.duration == 2
    await target.expect("chat_ban")
    await target.join(channel_id)
    assert await proto.error(target) == BANNED
    deadline = time.monotonic() + 8
    while True:
        await target.join(channel_id)
        frame = await target.recv()
        if not isinstance(frame, wire.ErrorFrame):
            break
        assert frame.payload.detail == BANNED
        assert time.monotonic() < deadline, "still banned"
        await asyncio.sleep(0.25)
    assert 1.5 <= time.monotonic() - banned_at <= 6
    await target.expect("channel_join", where=lambda f: f.payload.user == target.user)


@pytest.mark.parametrize("action", ["mute", "ban"])
async def test_sanctions_are_per_channel(proto, channel_id: int, action: str) -> None:
    staff, target, _ = await room(proto, channel_id)
    elsewhere = proto.new_channel()
    await proto.joined(staff, elsewhere)
    await proto.joined(target, elsewhere)
    await settle(proto, staff, target)
    await order(staff, action, channel_id, target.user.username)
    await target.expect(f"chat_{action}")
    await settle(proto, target)
    assert await can_send(target, elsewhere, "not sanctioned here")
    third = proto.new_channel()
    await proto.joined(target, third)  # joins elsewhere are not refused either
